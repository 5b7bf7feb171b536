"""DESIGN 5a "pull": the companion API's document events reach the payment engine. The delta
stores them in the inbox with the event stream's cursor; the dispatcher hands them to the
engine in order per document, at least once (the engine deduplicates on the event id)."""
from __future__ import annotations

from sqlalchemy import select

from payweave.core.engine import PaymentEngine, PaymentMethodSetup
from payweave.core.errors import DocumentNotOurs, UnsupportedDocumentFeature
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import ProcessedEventRow, TransactionRow
from payweave.core.sync import ErpSyncService, SyncSettings
from payweave.core.sync.models import ErpDocumentEventRow
from payweave.hooks.errors import TemporarilyUnavailable


def _order(bc, *, method: str | None = "PAYWEAVE", release: bool = True) -> dict:
    customer = sorted(bc.customers().values(), key=lambda c: c.number)[0]
    with bc.state.lock:
        item = sorted(bc.company.tables["items"].by_id.values(), key=lambda i: i.number)[0]
    body = {"documentType": "Order", "customerId": customer.id, "release": release,
            "lines": [{"type": "Item", "number": item.number, "quantity": 2}]}
    if method:
        body["paymentMethodCode"] = method
    return bc.create_document(body)


def _inbox(store):
    with store.transaction() as s:
        return [(r.event_type, r.document_id, r.status) for r in
                s.scalars(select(ErpDocumentEventRow).order_by(ErpDocumentEventRow.id))]


def test_released_orders_reach_the_payment_engine(bc, store):
    manager = PluginManager(PayweaveSettings(plugins="erp_businesscentral,psp_mock", accounts={
        "erp_businesscentral": {"default": bc.account_settings()}, "psp_mock": {"default": {"profile": "full"}}}))
    manager.load_entrypoints()
    engine = PaymentEngine(store, manager, clock=bc.service(store).clock)
    cid = bc.company.id
    engine.save_payment_method(PaymentMethodSetup(company_id=cid, code="PAYWEAVE", psp="psp_mock", psp_account="default"))
    service = ErpSyncService(store, manager, settings=SyncSettings(page_size=20), clock=engine.clock,
                             document_event_handler=engine.handle_event)
    service.connect()
    assert _inbox(store) == []  # events before the connection are never replayed

    ours = _order(bc)
    other = _order(bc, method=None)
    report = service.run_sync(cid)

    events = _inbox(store)
    assert ("released", ours["id"], "dispatched") in events
    assert ("released", other["id"], "ignored") in events  # no payweave payment method on it
    assert report.events_dispatched == sum(1 for *_, st in events if st == "dispatched")
    with store.transaction() as s:
        [tx] = s.scalars(select(TransactionRow).where(TransactionRow.document_id == ours["id"])).all()
        assert (tx.company_id, tx.status, tx.payment_method_code) == (cid, "prepared", "PAYWEAVE")
        seen = set(s.scalars(select(ProcessedEventRow.event_id)))
    with store.transaction() as s:
        dispatched = set(s.scalars(select(ErpDocumentEventRow.event_id).where(ErpDocumentEventRow.status == "dispatched")))
    assert dispatched <= seen

    service.run_sync(cid)  # nothing new: nothing dispatched again
    assert _inbox(store) == events


def test_dispatch_keeps_each_documents_order_and_retries_transient_failures(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    a = _order(bc)
    b = _order(bc)
    bc.document_action(a["id"], "reopen")
    bc.document_action(a["id"], "release")
    bc.document_action(b["id"], "reopen")
    service.run_sync(cid)  # no handler yet: the events wait in the inbox
    pending = _inbox(store)
    assert {st for *_, st in pending} == {"pending"}
    a_events = [(t, d) for t, d, _ in pending if d == a["id"]]
    assert [t for t, _ in a_events][-3:] == ["released", "reopened", "released"]

    calls: list[tuple[str, str]] = []
    failures = {"a": 1}

    def handler(event):
        doc = event.document.document_id
        calls.append((event.type.value, doc))
        assert event.document.company_id == cid
        if doc == a["id"] and event.type.value == "reopened" and failures["a"]:
            failures["a"] -= 1
            raise TemporarilyUnavailable("the PSP is down")
        if doc == b["id"] and event.type.value == "reopened":
            raise UnsupportedDocumentFeature("Invoice discount amounts are not supported.")
        if event.type.value == "changed":
            raise DocumentNotOurs("not ours")
        return None

    first = service.dispatch_document_events(cid, handler)
    assert first.deferred >= 1 and first.refused == 1
    after_first = [(t, st) for t, d, st in _inbox(store) if d == a["id"]][-3:]
    assert after_first == [("released", "dispatched"), ("reopened", "pending"), ("released", "pending")]

    second = service.dispatch_document_events(cid, handler)
    assert second.deferred == 0
    final = {(t, d): st for t, d, st in _inbox(store)}
    assert final[("reopened", b["id"])] == "refused"
    assert all(st != "pending" for st in final.values())
    a_calls = [t for t, d in calls if d == a["id"]]
    # the failed "reopened" was retried, and "released" only ran after it succeeded
    assert a_calls[-4:] == ["released", "reopened", "reopened", "released"]

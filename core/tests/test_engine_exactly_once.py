"""Exactly-once PSP effects: intent before the call, outcome after, replay with the same key;
serialized requests per document; deduplicated document events."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from payweave.core.engine import PaymentEngine, TxStatus
from payweave.core.errors import AmountNotAvailable, OperationOutcomeUnknown, ReleaseRequired
from payweave.core.jobs.queue import JobKind
from payweave.core.plugins import PluginBug, PspClient
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document
from payweave.hooks.errors import PaymentDeclined
from payweave.plugins.psp_mock import Fault

D = Decimal


def reserved(engine, code, amount="100.00"):
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, amount)])
    tx = engine.handle_event(document_event("released", doc)).transaction
    return doc, engine.reserve("CRONUS", tx.id)


def test_timeout_after_the_psp_applied_is_recovered_without_a_second_capture(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    mock_ledger().inject(Fault.TIMEOUT_AFTER, operation="capture")
    with pytest.raises(OperationOutcomeUnknown) as err:
        engine.capture("CRONUS", tx.id, "40.00")
    assert err.value.retryable and "cannot happen twice" in err.value.message
    assert mock_ledger().count("capture") == 1  # the PSP did capture
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.RESERVED and view.operations[-1].status == "unknown"
    assert view.history[-1].action == "capture_unanswered"
    jobs = engine.jobs.list(company_id="CRONUS", kind=JobKind.RECOVER_OPERATION)
    assert len(jobs) == 1 and jobs[0].payload == {"operation_id": view.operations[-1].id}
    assert engine.recover() == 1
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.captured == D("40.00") and view.operations[-1].status == "succeeded"
    assert mock_ledger().count("capture") == 1
    assert view.operations[-1].attempts == 2


def test_the_next_request_replays_an_unanswered_call_first(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    mock_ledger().inject(Fault.TIMEOUT_AFTER, operation="capture")
    with pytest.raises(OperationOutcomeUnknown):
        engine.capture("CRONUS", tx.id, "40.00")
    view = engine.capture("CRONUS", tx.id, "60.00")
    assert view.status is TxStatus.CAPTURED and view.amounts.captured == D("100.00")
    keys = [key for op, key in mock_ledger().requests if op == "capture"]
    assert len(keys) == 2 and keys == [o.idempotency_key for o in view.operations if o.kind == "capture"]
    assert mock_ledger().count("capture") == 2


def test_psp_down_before_the_call_is_replayed_once(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    mock_ledger().inject(Fault.UNAVAILABLE, operation="capture", times=2)
    with pytest.raises(OperationOutcomeUnknown):
        engine.capture("CRONUS", tx.id)
    with pytest.raises(OperationOutcomeUnknown):  # still down: the new request is refused, nothing new is sent
        engine.void("CRONUS", tx.id)
    assert mock_ledger().count("capture") == 0 and mock_ledger().count("void") == 0
    assert engine.recover() == 1
    assert engine.get_transaction("CRONUS", tx.id).status is TxStatus.CAPTURED
    assert mock_ledger().count("capture") == 1


def test_a_crash_between_call_and_commit_is_recovered_by_a_new_engine(engine, method, mock_ledger, monkeypatch):
    code = method("full")
    _, tx = reserved(engine, code)

    def crash(self, op_id, result):
        raise SystemExit("power cut after the PSP answered")

    with monkeypatch.context() as m:
        m.setattr(PaymentEngine, "_apply", crash)
        with pytest.raises(SystemExit):
            engine.capture("CRONUS", tx.id)
    assert mock_ledger().count("capture") == 1
    assert engine.get_transaction("CRONUS", tx.id).operations[-1].status == "started"
    restarted = PaymentEngine(engine.store, engine.plugins, clock=engine.clock, settings=engine.settings)
    assert restarted.recover() == 1
    view = restarted.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.CAPTURED and view.amounts.captured == D("100.00")
    assert mock_ledger().count("capture") == 1


def test_a_declined_capture_is_final_and_repeats_its_refusal(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    mock_ledger().inject(Fault.DECLINE, operation="capture")
    with pytest.raises(PaymentDeclined):
        engine.capture("CRONUS", tx.id, request_id="r-1")
    with pytest.raises(PaymentDeclined) as again:
        engine.capture("CRONUS", tx.id, request_id="r-1")
    assert again.value.code == "payment_declined"
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.RESERVED and view.operations[-1].status == "failed"
    assert engine.capture("CRONUS", tx.id, request_id="r-2").status is TxStatus.CAPTURED


def test_a_plugin_contract_violation_parks_and_blocks_until_fixed(engine, method, mock_ledger, monkeypatch):
    code = method("full")
    _, tx = reserved(engine, code)
    with monkeypatch.context() as m:
        m.setattr(PspClient, "capture", lambda self, account, request: (_ for _ in ()).throw(
            PluginBug("Plugin 'psp_mock' raised KeyError in psp_capture instead of a payweave error: 'x'")))
        with pytest.raises(PluginBug):
            engine.capture("CRONUS", tx.id, "10.00")
        assert engine.get_transaction("CRONUS", tx.id).operations[-1].status == "parked"
        with pytest.raises(PluginBug):
            engine.capture("CRONUS", tx.id, "20.00")
    view = engine.capture("CRONUS", tx.id, "20.00")  # the fixed plugin: the parked call is replayed first
    assert view.amounts.captured == D("30.00")
    assert [o.status for o in view.operations] == ["succeeded", "succeeded", "succeeded"]
    assert mock_ledger().count("capture") == 2


def test_concurrent_captures_on_one_document_are_serialized(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    outcomes: list[object] = []
    lock = threading.Lock()

    def grab(i: int) -> None:
        try:
            view = engine.capture("CRONUS", tx.id, "15.00", request_id=f"grab-{i}")
            result: object = view.amounts.captured
        except AmountNotAvailable as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [o for o in outcomes if isinstance(o, AmountNotAvailable)]
    assert len(refused) == 4
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.captured == D("90.00")
    assert mock_ledger().payment(tx.psp_reference).captured == D("90.00")
    assert mock_ledger().count("capture") == 6


def test_a_repeated_document_event_is_applied_once(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    event = document_event("posted", invoice, posted_document_id=invoice.document_id)
    first = engine.handle_event(event)
    second = engine.handle_event(event)
    assert not first.replayed and second.replayed
    assert second.actions == first.actions
    assert mock_ledger().count("capture") == 1


def test_concurrent_deliveries_of_one_event(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    event = document_event("posted", invoice, posted_document_id=invoice.document_id)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.handle_event(event))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.replayed for r in results) == [False, True, True, True, True]
    assert mock_ledger().count("capture") == 1


def test_a_refused_event_repeats_its_refusal(engine, method):
    code = method("full", capture_timing="on_posting")
    doc = sales_document(payment_method_code=code)
    event = document_event("posted", posted_invoice(doc))
    with pytest.raises(ReleaseRequired) as first:
        engine.handle_event(event)
    with pytest.raises(ReleaseRequired) as second:
        engine.handle_event(event)
    assert first.value.message == second.value.message


def test_an_unanswered_call_inside_an_event_finishes_on_redelivery(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    event = document_event("posted", invoice, posted_document_id=invoice.document_id)
    mock_ledger().inject(Fault.TIMEOUT_AFTER, operation="capture")
    with pytest.raises(OperationOutcomeUnknown):
        engine.handle_event(event)
    result = engine.handle_event(event)  # BC delivers the event again
    assert not result.replayed and result.transaction.status is TxStatus.CAPTURED
    assert mock_ledger().count("capture") == 1

"""Paid in payweave is recorded in BC without anyone asking: the erp_sync job that brings a
posted invoice in also writes the payment captured on it (a customer payment applied to the
invoice, posted) and the PSP's paid payouts as deposits, once each however often it runs."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from payweave.core.engine import PaymentEngine, PaymentMethodSetup
from payweave.core.jobs.queue import JobQueue
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.sync import ErpSyncService, SyncSettings, handle_erp_job
from payweave.core.sync.jobs import ACTION_SYNC, enqueue_erp_job
from payweave.plugins.psp_mock import ledger_for

CLEARING, FEES, BANK = "10900", "60800", "CHECKING"


def _run_sync_job(service: ErpSyncService, queue: JobQueue, cid: str) -> dict:
    with service.store.transaction() as s:
        enqueue_erp_job(queue, s, company_id=cid, action=ACTION_SYNC, due_at=service.clock.now() - timedelta(seconds=1))
    [job] = [j for j in queue.claim("test-worker", limit=10) if j.payload.get("action") == ACTION_SYNC]
    result = handle_erp_job(service, job)
    queue.complete(job, result)
    return result


def test_sync_job_records_captured_payments_and_payouts_in_bc_once(bc, sqlite_store):
    store = sqlite_store
    manager = PluginManager(PayweaveSettings(plugins="erp_businesscentral,psp_mock", accounts={
        "erp_businesscentral": {"default": bc.account_settings()}, "psp_mock": {"reconcile": {"profile": "full"}}}))
    manager.load_entrypoints()
    clock = bc.service(store).clock
    engine = PaymentEngine(store, manager, clock=clock)
    queue = JobQueue(store, clock=clock)
    cid = bc.company.id
    engine.save_payment_method(PaymentMethodSetup(company_id=cid, code="PAYWEAVE", psp="psp_mock", psp_account="reconcile",
                                                  capture_timing="on_posting"))
    service = ErpSyncService(store, manager, settings=SyncSettings(page_size=50), clock=clock, queue=queue,
                             document_event_handler=engine.handle_event)
    service.connect()
    service.set_account_setup(cid, payments_account=CLEARING, bank_account=BANK, fee_account=FEES, actor="test")

    customer = sorted(bc.customers().values(), key=lambda c: c.number)[0]
    with bc.state.lock:
        item = sorted(bc.company.tables["items"].by_id.values(), key=lambda i: i.number)[0]
    order = bc.create_document({"documentType": "Order", "customerId": customer.id, "release": True,
                                "paymentMethodCode": "PAYWEAVE", "lines": [{"type": "Item", "number": item.number,
                                                                             "quantity": 2}]})
    _run_sync_job(service, queue, cid)  # the release reaches the engine: prepared
    tx = engine.transaction_for_document(cid, "sales_order", order["id"])
    engine.reserve(cid, tx.id)
    bc.document_action(order["id"], "post")
    result = _run_sync_job(service, queue, cid)  # posted: captured on posting, invoice synced, payment written
    tx = engine.get_transaction(cid, tx.id)
    assert tx.status.value == "captured"
    [payment] = result["reconciled"]["payments"]
    invoice = next(d for d in bc.invoices().values() if d.posted and d.order_id == order["id"])
    assert bc.status_of(invoice) == "Paid" and bc.remaining_of(invoice) == Decimal(0)
    entries = [e for e in bc.ledger_entries() if e["documentNumber"] == payment]
    assert len(entries) == 1

    # the PSP pays out: the next sync records the deposit (net to the bank, fees apart), once
    ledger = ledger_for(manager.account("psp_mock", "reconcile"))
    assert {p.currency for p in ledger.payouts()} <= {"USD"}
    ledger.clock.advance(timedelta(days=3))
    payouts = [p for p in ledger.run_payout() if p.status == "paid"]
    assert payouts, "the captured money should be paid out after the payout delay"
    again = _run_sync_job(service, queue, cid)
    assert again["reconciled"]["payments"] == []  # already recorded: nothing new written
    assert len(again["reconciled"]["deposits"]) == len(payouts)
    third = _run_sync_job(service, queue, cid)
    assert third["reconciled"]["payments"] == []
    assert third["reconciled"]["deposits"] == again["reconciled"]["deposits"]  # the same deposits, not new ones
    assert len([e for e in bc.ledger_entries() if e["documentNumber"] == payment]) == 1

"""Account setup and write-back against the BC sandbox: a captured payment becomes a posted
customer payment applied to its invoice, a payout becomes a deposit (clearing -> bank, fees),
retries after an injected timeout find the earlier entry by document number, failures are
never written back, and a write-back waits (durably) for the account setup."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from payweave.core.jobs.queue import JobQueue
from payweave.core.sync import AccountSetupInvalid, WritebackRefused, document_number, handle_erp_job
from payweave.hooks.models import Money, Payout
from payweave.plugins.erp_businesscentral.conventions import CUSTOMER_PAYMENT_AMOUNT_SIGN
from payweave.plugins.erp_businesscentral.sandbox import Fault

CLEARING, FEES, BANK = "10900", "60800", "CHECKING"


def _setup(service, cid):
    return service.set_account_setup(cid, payments_account=CLEARING, bank_account=BANK, fee_account=FEES, actor="test")


def _entries(bc, doc_no):
    return [e for e in bc.ledger_entries() if e["documentNumber"] == doc_no]


def _gl(bc, doc_no):
    with bc.state.lock:
        return [(e.account.number, e.debit, e.credit) for e in bc.company.tables["generalLedgerEntries"].by_id.values()
                if e.document_number == doc_no]


def test_account_setup_is_filled_from_bc_and_validated(bc, sqlite_store):
    store = sqlite_store
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    accounts = {(a.kind, a.number) for a in service.ledger_accounts(cid)}
    assert {("gl_account", CLEARING), ("gl_account", FEES), ("bank_account", BANK)} <= accounts
    with bc.state.lock:
        blocked = next(a for a in bc.company.tables["accounts"].by_id.values() if a.number == "10200")
        blocked.blocked = True

    cases = [
        (dict(payments_account=BANK, bank_account=BANK, fee_account=FEES), "must be a G/L account"),
        (dict(payments_account=CLEARING, bank_account=CLEARING, fee_account=FEES), "must be a bank account"),
        (dict(payments_account="10200", bank_account=BANK, fee_account=FEES), "blocked"),
        (dict(payments_account="99999", bank_account=BANK, fee_account=FEES), "no account"),
        (dict(payments_account=CLEARING, bank_account=BANK, fee_account=CLEARING), "must be different"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AccountSetupInvalid, match=message):
            service.set_account_setup(cid, **kwargs)
    assert service.account_setup(cid) is None

    view = _setup(service, cid)
    assert (view.payments_account.number, view.bank_account.number, view.fee_account.number) == (CLEARING, BANK, FEES)
    assert service.status(cid).account_setup == view


def test_a_captured_payment_is_posted_in_bc_applied_to_its_invoice(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    _setup(service, cid)
    inv = bc.open_invoice(minimum=Decimal("100"))
    part = (inv.total_incl * Decimal("0.3")).quantize(Decimal("0.01"))

    wb = service.record_payment(cid, payment_key="tx-7:capture-1", invoice_id=inv.id,
                                amount=Money(amount=part, currency="USD"), external_reference="pi_123")

    assert wb.status == "posted" and wb.already_existed is False and wb.entry_ids
    assert wb.document_number == document_number(cid, "payment", "tx-7:capture-1")
    [entry] = _entries(bc, wb.document_number)
    assert (entry["appliedToInvoiceId"], Decimal(str(entry["amount"])), entry["externalDocumentNumber"]) == (
        inv.id, CUSTOMER_PAYMENT_AMOUNT_SIGN * part, "pi_123")
    assert bc.invoices()[inv.id].remaining == inv.total_incl - part
    assert CLEARING in {number for number, _, _ in _gl(bc, wb.document_number)}
    # payweave counted the payment at once; the next sync recognises it in BC's balance
    assert service.invoice(cid, inv.id).open == inv.total_incl - part
    service.run_sync(cid)
    view = service.invoice(cid, inv.id)
    assert (view.open, view.remaining, view.status) == (inv.total_incl - part, inv.total_incl - part, "open")
    assert service.writeback(wb.id).observed_in_erp

    again = service.record_payment(cid, payment_key="tx-7:capture-1", invoice_id=inv.id,
                                   amount=Money(amount=part, currency="USD"))
    assert again.id == wb.id and len(_entries(bc, wb.document_number)) == 1
    with pytest.raises(WritebackRefused):
        service.record_payment(cid, payment_key="tx-7:capture-1", invoice_id=inv.id,
                               amount=Money(amount=part + 1, currency="USD"))


def test_a_retry_after_a_timeout_finds_the_posted_entry_instead_of_posting_twice(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    _setup(service, cid)
    inv = bc.open_invoice()
    faults = bc.state.faults
    # the first G/L lookup answers normally; BC posts the journal but the response is lost
    # (connection dropped after BC committed); every later lookup fails (503), so the plugin
    # cannot confirm the outcome and gives up with "temporarily unavailable"
    faults.inject(Fault(kind="delay", delay=0, method="GET", path=r"/generalLedgerEntries$", count=1))
    faults.inject(Fault(kind="drop", method="POST", path=r"Microsoft\.NAV\.post$", count=1))
    faults.inject(Fault(kind="status", status=503, retry_after=0, method="GET", path=r"/generalLedgerEntries$",
                        count=1000))

    first = service.record_payment(cid, payment_key="tx-9:capture-1", invoice_id=inv.id,
                                   amount=Money(amount=inv.total_incl, currency="USD"))

    assert first.status == "pending" and first.attempts == 1
    assert first.last_error_code == "temporarily_unavailable"
    assert len(_entries(bc, first.document_number)) == 1, "BC did post it before the response was lost"

    faults.clear()
    retried = service.process_writeback(first.id)

    assert retried.status == "posted" and retried.already_existed is True
    assert retried.document_number == first.document_number and retried.attempts == 2
    assert len(_entries(bc, first.document_number)) == 1
    assert bc.invoices()[inv.id].remaining == 0
    posts = sum(r["count"] for r in bc.state.stats.snapshot()["requests"]
                if r["method"] == "POST" and r["entitySet"] == "journals")
    assert posts == 1


def test_a_payout_is_recorded_as_a_deposit_clearing_to_bank_with_fees(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    _setup(service, cid)
    payout = Payout(payout_id="po_1001", currency="USD", gross=Decimal("250.00"), fee=Decimal("7.55"),
                    net=Decimal("242.45"), arrival_date=date(2026, 3, 3), status="paid")

    wb = service.record_deposit(cid, payout)

    assert wb.status == "posted" and wb.amount == Decimal("242.45")
    gl = _gl(bc, wb.document_number)
    by_account: dict[str, Decimal] = {}
    for number, debit, credit in gl:
        by_account[number] = by_account.get(number, Decimal(0)) + debit - credit
    assert by_account == {"10100": Decimal("242.45"), FEES: Decimal("7.55"), CLEARING: Decimal("-250.00")}
    assert service.record_deposit(cid, payout).id == wb.id
    assert len(_gl(bc, wb.document_number)) == len(gl)
    with pytest.raises(WritebackRefused, match="only paid payouts"):
        service.record_deposit(cid, payout.model_copy(update={"payout_id": "po_1002", "status": "failed"}))


def test_payment_failures_are_never_written_back(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    _setup(service, cid)
    inv = bc.open_invoice()
    full = Money(amount=inv.total_incl, currency="USD")

    pending = service.record_payment(cid, payment_key="tx-20:capture", invoice_id=inv.id, amount=full, process=False)
    assert service.invoice(cid, inv.id).paid_via_payweave
    bc.state.stats.reset()
    failed = service.record_payment_failure(cid, "tx-20:capture", "direct debit returned")
    after = service.process_writeback(pending.id)

    assert failed.status == after.status == "cancelled" and failed.payment_failed_at is not None
    assert bc.state.stats.snapshot()["requests"] == []  # not one call to BC
    view = service.invoice(cid, inv.id)
    assert (view.paid_via_payweave, view.open, view.status) == (False, inv.total_incl, "open")

    other = bc.open_invoice(exclude=(inv.id,))
    posted = service.record_payment(cid, payment_key="tx-21:capture", invoice_id=other.id,
                                    amount=Money(amount=other.total_incl, currency="USD"))
    assert posted.status == "posted"
    bc.state.stats.reset()
    flagged = service.record_payment_failure(cid, "tx-21:capture", "chargeback")
    assert flagged.status == "posted" and flagged.last_error_code == "payment_failed_after_posting"
    assert bc.state.stats.snapshot()["requests"] == []
    assert bc.invoices()[other.id].remaining == 0  # BC keeps it until a person reverses it


def test_a_writeback_waits_durably_for_the_account_setup(bc, store):
    service = bc.service(store)
    service.queue = JobQueue(store, clock=service.clock)
    cid = bc.company.id
    service.connect()
    inv = bc.open_invoice()

    wb = service.record_payment(cid, payment_key="tx-30:capture", invoice_id=inv.id,
                                amount=Money(amount="12.34", currency="USD"))
    assert wb.status == "pending" and wb.last_error_code == "erp_account_setup_missing"
    assert _entries(bc, wb.document_number) == []

    _setup(service, cid)  # saving the setup queues the waiting write-back
    jobs = service.queue.claim("test-worker", limit=10)
    actions = [j.payload["action"] for j in jobs]
    assert "writeback" in actions
    for job in jobs:
        result = handle_erp_job(service, job)
        service.queue.complete(job, result)
    assert service.writeback(wb.id).status == "posted"
    assert len(_entries(bc, wb.document_number)) == 1


def test_psp_payouts_become_deposits_once_each(bc, sqlite_store):
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings
    from payweave.core.sync import ErpSyncService, SyncSettings
    from payweave.hooks.models import CaptureRequest, ReserveRequest
    from payweave.plugins.psp_mock import ledger_for, reset_ledgers

    reset_ledgers()
    manager = PluginManager(PayweaveSettings(plugins="erp_businesscentral,psp_mock", accounts={
        "erp_businesscentral": {"default": bc.account_settings()}, "psp_mock": {"default": {"profile": "full"}}}))
    manager.load_entrypoints()
    service = ErpSyncService(sqlite_store, manager, settings=SyncSettings(page_size=50, pdfs="none"),
                             clock=bc.service(sqlite_store).clock)
    cid = bc.company.id
    service.connect()
    _setup(service, cid)
    psp, account = manager.psp("psp_mock"), manager.account("psp_mock")
    for n, amount in enumerate(("100.00", "35.50")):
        res = psp.reserve(account, ReserveRequest(idempotency_key=f"r{n}", transaction_id=f"t{n}",
                                                  amount=Money(amount=amount, currency="USD")))
        psp.capture(account, CaptureRequest(idempotency_key=f"c{n}", transaction_id=f"t{n}",
                                            psp_reference=res.psp_reference, amount=Money(amount=amount, currency="USD")))
    [payout] = ledger_for(account).run_payout()

    [wb] = service.record_payouts(cid, "psp_mock")
    again = service.record_payouts(cid, "psp_mock")

    assert wb.status == "posted" and wb.amount == payout.net and wb.source_key == payout.payout_id
    assert [w.id for w in again] == [wb.id]
    totals: dict[str, Decimal] = {}
    for number, debit, credit in _gl(bc, wb.document_number):
        totals[number] = totals.get(number, Decimal(0)) + debit - credit
    assert totals == {"10100": payout.net, FEES: payout.fee, CLEARING: -payout.gross}
    reset_ledgers()

"""Write-backs cut short: BC applied a payment whose outcome payweave never committed.

* The sync reads the invoice while payweave's row is still pending: BC's lower balance is
  payweave's own payment (not someone else's), so the invoice's open amount stays right and a
  later capture on the same invoice is still recorded.
* A write-back whose process died holding its lease is resumed once the lease runs out
  (``retry_stale_writebacks``, run after every sync by the reconciliation), and BC still gets
  one entry."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from payweave.core.sync.models import ErpPaymentRow, ErpWritebackRow
from payweave.hooks.models import Money
from payweave.plugins.erp_businesscentral.sandbox import Fault

CLEARING, FEES, BANK = "10900", "60800", "CHECKING"


def _entries(bc, doc_no):
    return [e for e in bc.ledger_entries() if e["documentNumber"] == doc_no]


def _lose_the_answer(bc):
    """BC posts the journal, the answer is lost and BC cannot be asked what happened."""
    faults = bc.state.faults
    faults.inject(Fault(kind="delay", delay=0, method="GET", path=r"/generalLedgerEntries$", count=1))
    faults.inject(Fault(kind="drop", method="POST", path=r"Microsoft\.NAV\.post$", count=1))
    faults.inject(Fault(kind="status", status=503, retry_after=0, method="GET", path=r"/generalLedgerEntries$",
                        count=1000))


def test_a_payment_bc_applied_before_payweave_knew_is_recognised_and_the_next_one_recorded(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    service.set_account_setup(cid, payments_account=CLEARING, bank_account=BANK, fee_account=FEES, actor="test")
    inv = bc.open_invoice(minimum=Decimal("100"))
    first_part = (inv.total_incl * Decimal("0.7")).quantize(Decimal("0.01"))
    rest = inv.total_incl - first_part
    _lose_the_answer(bc)

    first = service.record_payment(cid, payment_key="tx-40:capture-1", invoice_id=inv.id,
                                   amount=Money(amount=first_part, currency="USD"))
    assert first.status == "pending" and first.attempts == 1
    assert len(_entries(bc, first.document_number)) == 1, "BC did post it"
    bc.state.faults.clear()

    service.run_sync(cid)  # BC's balance dropped by our own payment, still pending here

    view = service.invoice(cid, inv.id)
    assert view.open == rest, "the drop is our pending payment, not a second one"
    with store.transaction() as s:
        wb = s.scalars(select(ErpWritebackRow).where(ErpWritebackRow.id == first.id)).one()
        assert wb.observed_in_erp
        matched = s.scalars(select(ErpPaymentRow.matched_writebacks).where(ErpPaymentRow.invoice_id == inv.id)).all()
    assert [first.id] in matched

    retried = service.process_writeback(first.id)
    assert (retried.status, retried.already_existed) == ("posted", True)
    second = service.record_payment(cid, payment_key="tx-40:capture-2", invoice_id=inv.id,
                                    amount=Money(amount=rest, currency="USD"))
    assert second.status == "posted"
    service.run_sync(cid)
    assert bc.invoices()[inv.id].remaining == 0
    assert len(_entries(bc, first.document_number)) == 1 and len(_entries(bc, second.document_number)) == 1
    assert (service.invoice(cid, inv.id).open, service.invoice(cid, inv.id).status) == (0, "paid")


def test_a_write_back_left_leased_by_a_dead_process_is_resumed_after_its_lease(bc, store):
    service = bc.service(store, writeback_lease_seconds=60)
    cid = bc.company.id
    service.connect()
    service.set_account_setup(cid, payments_account=CLEARING, bank_account=BANK, fee_account=FEES, actor="test")
    inv = bc.open_invoice()
    pending = service.record_payment(cid, payment_key="tx-41:capture-1", invoice_id=inv.id,
                                     amount=Money(amount=inv.total_incl, currency="USD"), process=False)
    # a process leased it and died before (or while) calling BC
    with store.transaction() as s:
        row = s.get(ErpWritebackRow, pending.id)
        row.lease_owner, row.attempts = "dead-worker", 1
        row.lease_expires_at = service.clock.now() + timedelta(seconds=60)

    assert service.retry_stale_writebacks(cid) == [], "a live lease is left alone"
    assert service.writeback(pending.id).status == "pending"

    bc.state.clock.advance(timedelta(seconds=61))
    assert service.retry_stale_writebacks(cid) == [pending.id]
    done = service.writeback(pending.id)
    assert done.status == "posted"
    assert len(_entries(bc, done.document_number)) == 1
    assert service.retry_stale_writebacks(cid) == []

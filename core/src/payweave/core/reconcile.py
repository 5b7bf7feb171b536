"""Reconciliation between the payment engine and the ERP: what payweave collected is recorded in
the ERP (DESIGN section 5, "paid in payweave is recorded in BC"; deposits).

* :func:`record_captured_payments`: every captured amount of a transaction whose document was
  posted as an invoice (a direct sales invoice, or the invoice BC posted from a sales order) is
  written to the ERP as a customer payment applied to that invoice, through the ERP sync's
  idempotent write-back (:meth:`~payweave.core.sync.ErpSyncService.record_payment`), once per
  (transaction, invoice).
* :func:`record_payouts`: every paid payout the PSP lists is written as a deposit (clearing ->
  bank, fees to the fee account) through
  :meth:`~payweave.core.sync.ErpSyncService.record_deposit`, once per payout.

Both only ever add what is missing, so they can run as often as wanted (after a capture, from a
scheduled job, by hand); the write-back protocol guarantees one ERP entry per payment key or
payout. An invoice the sync has not stored yet is left for a later run. Refunds are not written:
the credit memo posted in BC already books them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from payweave.core.engine import PaymentEngine
from payweave.core.store import DocumentRow, TransactionRow
from payweave.core.sync import ErpSyncService, WritebackView
from payweave.core.sync.models import ErpInvoiceRow
from payweave.hooks.models import DocumentType, Money
from payweave.hooks.money import from_minor_units, to_minor_units

PAYMENT_KEY_PREFIX = "payweave-capture"


def payment_key(transaction_id: str, invoice_id: str) -> str:
    """The write-back key of the payment of ``transaction_id`` applied to ``invoice_id``."""
    return f"{PAYMENT_KEY_PREFIX}:{transaction_id}:{invoice_id}"


@dataclass(frozen=True)
class _Planned:
    transaction_id: str
    invoice_id: str
    amount: Money
    psp_reference: str
    document_number: str


def _plan(engine: PaymentEngine, company_id: str, recorded: dict[str, int]) -> list[_Planned]:
    planned: list[_Planned] = []
    with engine.store.transaction() as s:
        txs = s.scalars(select(TransactionRow).where(TransactionRow.company_id == company_id,
                                                     TransactionRow.captured_minor > 0)
                        .order_by(TransactionRow.created_at, TransactionRow.id)).all()
        for tx in txs:
            invoices = s.scalars(select(DocumentRow).where(
                DocumentRow.company_id == company_id, DocumentRow.transaction_id == tx.id,
                DocumentRow.document_type == DocumentType.SALES_INVOICE.value, DocumentRow.status == "posted",
            ).order_by(DocumentRow.updated_at, DocumentRow.document_id)).all()
            left = tx.captured_minor
            for doc in invoices:
                if left <= 0:
                    break
                invoice = s.get(ErpInvoiceRow, (company_id, doc.document_id.lower()))
                if invoice is None or invoice.origin != "erp" or invoice.currency != tx.currency:
                    continue  # not synced yet (a later run records it), or not an ERP invoice
                key = payment_key(tx.id, invoice.invoice_id)
                if key in recorded:
                    left -= recorded[key]
                    continue
                amount = min(left, invoice.total_incl_minor, invoice.open_minor)
                if amount <= 0:
                    continue  # settled in the ERP already (paid there, or credited)
                left -= amount
                planned.append(_Planned(
                    tx.id, invoice.invoice_id, Money(amount=from_minor_units(amount, tx.currency), currency=tx.currency),
                    tx.psp_reference or "", invoice.number or doc.number,
                ))
    return planned


def record_captured_payments(engine: PaymentEngine, sync: ErpSyncService, company_id: str) -> list[WritebackView]:
    """Write every captured payment of a posted invoice of ``company_id`` to the ERP that is not
    written yet; returns the write-backs made by this call (posted, or pending when the ERP was
    unavailable: a job or the next call retries them)."""
    recorded = {w.source_key: to_minor_units(w.amount, w.currency) for w in sync.writebacks(company_id)
                if w.kind == "payment"}
    done: list[WritebackView] = []
    for item in _plan(engine, company_id, recorded):
        done.append(sync.record_payment(
            company_id, payment_key=payment_key(item.transaction_id, item.invoice_id), invoice_id=item.invoice_id,
            amount=item.amount, external_reference=item.psp_reference[:35],
            description=f"payweave payment {item.document_number}"[:100],
        ))
    return done


def record_payouts(engine: PaymentEngine, sync: ErpSyncService, company_id: str, psp: str, account: str = "default",
                   *, since: datetime | None = None) -> list[WritebackView]:
    """Write every paid payout of the PSP account (created after ``since``) to the ERP as a
    deposit of ``company_id``; payouts recorded before are returned unchanged (once per payout)."""
    payouts = engine.plugins.psp(psp).list_payouts(engine.account(psp, account), since)
    return [sync.record_deposit(company_id, payout) for payout in payouts if payout.status == "paid"]


__all__ = ["payment_key", "record_captured_payments", "record_payouts"]

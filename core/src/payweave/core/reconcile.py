"""Reconciliation of captured payments: what payweave collected on an invoice is recorded in the
ERP (DESIGN section 5, "paid in payweave is recorded in BC").

:func:`record_captured_payments` writes every captured amount of a transaction whose document
was posted as an invoice (a direct sales invoice, or the invoice BC posted from a sales order) to
the ERP as a customer payment applied to that invoice, through the ERP sync's idempotent
write-back (:meth:`~payweave.core.sync.ErpSyncService.record_payment`), once per (transaction,
invoice). It only adds what is missing, so it can run as often as wanted (after a capture, from
a scheduled job, by hand); the write-back protocol guarantees one ERP entry per payment key. An
invoice the sync has not stored yet is left for a later run. Refunds are not written: the credit
memo posted in BC books them. Payouts become deposits through
:meth:`~payweave.core.sync.ErpSyncService.record_payouts`.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from sqlalchemy import func, literal, select

from payweave.core.engine import PaymentEngine
from payweave.core.store import DocumentRow, PaymentMethodRow, Store, TransactionRow
from payweave.core.sync import ErpSyncService, WritebackView
from payweave.core.sync.models import ErpInvoiceRow, ErpWritebackRow
from payweave.hooks.models import DocumentType, Money
from payweave.hooks.money import from_minor_units

PAYMENT_KEY_PREFIX = "payweave-capture"


def payment_key(transaction_id: str, invoice_id: str, n: int = 1) -> str:
    """The write-back key of the ``n``-th payment of ``transaction_id`` applied to ``invoice_id``
    (a second one follows a later capture on the same invoice)."""
    base = f"{PAYMENT_KEY_PREFIX}:{transaction_id}:{invoice_id}"
    return base if n == 1 else f"{base}:{n}"


@dataclass(frozen=True)
class _Planned:
    transaction_id: str
    invoice_id: str
    key: str
    amount: Money
    psp_reference: str
    document_number: str


def _key_range(transaction_id: str) -> tuple[str, str]:
    """The write-back keys of one transaction's payments lie in ``[low, high)``: every key is
    ``payweave-capture:{transaction}:{invoice}[:n]`` and ``;`` sorts right after ``:``, so the
    range is an index seek on (company, kind, source_key), not a scan."""
    low = f"{PAYMENT_KEY_PREFIX}:{transaction_id}:"
    return low, low[:-1] + ";"


def _recorded_minor(transaction_id: Any) -> Any:
    """SQL: the sum of the payment write-backs made for a transaction (any status: a pending one
    is on its way, a failed one is retried by its own job, never planned again here)."""
    low = literal(f"{PAYMENT_KEY_PREFIX}:") + transaction_id + literal(":")
    high = literal(f"{PAYMENT_KEY_PREFIX}:") + transaction_id + literal(";")
    return (select(func.coalesce(func.sum(ErpWritebackRow.amount_minor), 0))
            .where(ErpWritebackRow.company_id == TransactionRow.company_id, ErpWritebackRow.kind == "payment",
                   ErpWritebackRow.source_key >= low, ErpWritebackRow.source_key < high)
            .correlate(TransactionRow).scalar_subquery())


def _plan(store: Store, company_id: str) -> list[_Planned]:
    """What is captured and not written to the ERP yet. Only the transactions whose captured
    amount exceeds what was written for them are read (one query: a company's years of settled
    payments cost an index probe each, not a Python loop), so it stays cheap to run after
    every sync."""
    planned: list[_Planned] = []
    with store.transaction() as s:
        txs = s.scalars(select(TransactionRow).where(
            TransactionRow.company_id == company_id, TransactionRow.captured_minor > 0,
            TransactionRow.captured_minor > _recorded_minor(TransactionRow.id),
        ).order_by(TransactionRow.created_at, TransactionRow.id)).all()
        for tx in txs:
            low, high = _key_range(tx.id)
            recorded = {w.source_key: w.amount_minor for w in s.scalars(select(ErpWritebackRow).where(
                ErpWritebackRow.company_id == company_id, ErpWritebackRow.kind == "payment",
                ErpWritebackRow.source_key >= low, ErpWritebackRow.source_key < high))}
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
                # what was recorded on this invoice for this payment already (one write-back per
                # capture that reached it: a later capture adds the next one, never changes one)
                base = payment_key(tx.id, invoice.invoice_id)
                mine = [k for k in recorded if k == base or k.startswith(f"{base}:")]
                already = sum(recorded[k] for k in mine)
                left -= already
                amount = min(left, invoice.total_incl_minor - already, invoice.open_minor)
                if amount <= 0:
                    continue  # recorded, or settled in the ERP already (paid there, or credited)
                left -= amount
                planned.append(_Planned(
                    tx.id, invoice.invoice_id, payment_key(tx.id, invoice.invoice_id, len(mine) + 1),
                    Money(amount=from_minor_units(amount, tx.currency), currency=tx.currency),
                    tx.psp_reference or "", invoice.number or doc.number,
                ))
    return planned


def record_captured_payments(engine: PaymentEngine | None, sync: ErpSyncService, company_id: str) -> list[WritebackView]:
    """Write every captured payment of a posted invoice of ``company_id`` to the ERP that is not
    written yet; returns the write-backs made by this call (posted, or pending when the ERP was
    unavailable: a job or the next call retries them)."""
    done: list[WritebackView] = []
    for item in _plan(sync.store, company_id):
        done.append(sync.record_payment(
            company_id, payment_key=item.key, invoice_id=item.invoice_id,
            amount=item.amount, external_reference=item.psp_reference[:35],
            description=f"payweave payment {item.document_number}"[:100],
        ))
    return done


def payout_accounts(store: Store, company_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The PSP accounts whose payouts belong to ``company_id``: those its payment methods use and
    no other company's do. Returns (theirs, shared); a shared account's payouts cannot be told
    apart per company, so they are not recorded automatically (the log says so)."""
    with store.transaction() as s:
        rows = s.execute(select(PaymentMethodRow.company_id, PaymentMethodRow.psp, PaymentMethodRow.psp_account)).all()
    mine = sorted({(psp, account) for company, psp, account in rows if company == company_id})
    others = {(psp, account) for company, psp, account in rows if company != company_id}
    return [a for a in mine if a not in others], [a for a in mine if a in others]


def reconcile_company(sync: ErpSyncService, company_id: str) -> dict[str, object]:
    """Record in the ERP what payweave collected and is not recorded yet: captured payments on
    posted invoices, and paid payouts (since the company connected) of the PSP accounts its
    payment methods use; and write-backs a crash left pending are resumed. Runs after every sync of a connected company with an account setup (the
    ``erp_sync`` job), so a payment reaches BC within the polling interval at the latest."""
    connection = sync.connection(company_id)
    if connection.status != "connected" or sync.account_setup(company_id) is None:
        return {"skipped": "not connected or no account setup yet"}
    resumed = sync.retry_stale_writebacks(company_id)
    payments = record_captured_payments(None, sync, company_id)
    theirs, shared = payout_accounts(sync.store, company_id)
    deposits: list[WritebackView] = []
    for psp, account in theirs:
        if "psp_list_payouts" not in sync.plugins.get(psp).hooks:
            continue
        deposits += sync.record_payouts(company_id, psp, psp_account=account, since=connection.connected_at)
    if shared:
        sync.log.warning("erp.reconcile.shared_psp_accounts", accounts=[f"{p}:{a}" for p, a in shared])
    return {"payments": [w.document_number for w in payments], "resumed_writebacks": resumed, "deposits": [w.document_number for w in deposits],
            "shared_psp_accounts": [f"{p}:{a}" for p, a in shared]}


__all__ = ["payment_key", "payout_accounts", "reconcile_company", "record_captured_payments"]

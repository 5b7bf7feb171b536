"""Apply one page of ERP records to the store, by the sync rules (DESIGN section 5).

Every function runs inside the caller's transaction (the one that also moves the cursor), so a
page and its cursor commit together or not at all.

Rules:

* **Unpaid invoices follow the ERP**: amount, due date, lines, status and remaining amount.
* **Partial payments and credits applied in the ERP lower the open amount**: ``open`` follows
  the ERP's remaining amount; each change of ``total - remaining`` is kept as an
  ``erp_payments`` row (``source='erp_balance'``), so a payment or credit appears exactly once
  (and a reversal as a negative row). Payments are never deleted.
* **An invoice paid through payweave ignores later ERP edits**: the row is frozen; edits are
  only counted (``ignored_erp_changes``).
* **Records created in payweave** (``origin='payweave'``) are never overwritten by, nor written
  to, the ERP.
* **Deletions in the ERP do not archive**: nothing here deletes or archives a row (the ERP's
  delta does not even list deletions).
* **Out-of-order safety**: a record older than the stored one (by ``lastModifiedDateTime``) is
  stale and skipped, so repeated or overlapping reads never roll data back.

A record that cannot be stored (an amount with more decimals than its currency, no currency at
all) does not stop the sync: it is recorded in ``erp_sync_issues`` with the reason, and the
next successful read of that record resolves the issue.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import DocumentEvent, ErpCreditMemo, ErpCustomer, ErpInvoice, ErpPayment, SyncEntity
from payweave.hooks.money import MoneyError, normalize_currency, to_minor_units

from .bulk import BulkInsert
from .models import (
    ErpCreditMemoRow,
    ErpCustomerRow,
    ErpDocumentEventRow,
    ErpInvoiceLineRow,
    ErpInvoiceRow,
    ErpPaymentRow,
    ErpSyncIssueRow,
    ErpWritebackRow,
)

ORIGIN_ERP = "erp"
ORIGIN_PAYWEAVE = "payweave"

#: ERP status captions of posted invoices (BC: Open = unpaid, Paid, Canceled, Corrective)
POSTED_STATUSES = frozenset({"Open", "Paid", "Canceled", "Corrective"})
CANCELED_STATUSES = frozenset({"Canceled", "Corrective"})
#: write-back statuses that mean "payweave took this money for the invoice"
LIVE_WRITEBACK = ("pending", "posted")


@dataclass
class ApplyStats:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored: int = 0
    stale: int = 0
    issues: int = 0

    def add(self, other: ApplyStats) -> None:
        for name in ("inserted", "updated", "unchanged", "ignored", "stale", "issues"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class RecordUnusable(PayweaveError):
    code = "erp_record_unusable"


# ============================================================================================
# helpers
# ============================================================================================
def _minor(amount: Decimal, currency: str, what: str) -> int:
    try:
        return to_minor_units(amount, currency)
    except MoneyError as exc:
        raise RecordUnusable(f"{what}: {exc.message}") from None


def _currency(value: str, default: str | None, what: str) -> str:
    code = (value or "").strip() or (default or "")
    if not code:
        raise RecordUnusable(f"{what} has no currency and the connection has no default currency.")
    try:
        return normalize_currency(code)
    except MoneyError as exc:
        raise RecordUnusable(f"{what}: {exc.message}") from None


def _digest(payload: Any) -> str:
    """sha256 of ``json.dumps(payload, sort_keys=True, default=str)``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# An invoice's content hash is _digest({"f": fields, "l": lines}) of _invoice_values (the hash
# stored by every sync so far); the same JSON text is written here from templates, twice as fast
# as the encoder sorting and walking a dict per line. Keys in sorted order, the encoder's
# separators, strings through its own escaping, dates as str(), None as null
# (tests/sync/test_rules.py compares both texts on arbitrary values).
_enc = encode_basestring_ascii
_INVOICE_JSON = (
    '{"f": {"currency": %s, "customer_id": %s, "customer_number": %s, "due_date": %s, "erp_status": %s, '
    '"invoice_date": %s, "number": %s, "order_id": %s, "remaining_minor": %d, "total_excl_minor": %d, '
    '"total_incl_minor": %d, "total_tax_minor": %d}, "l": [')
_LINE_JSON = (
    '{"amount_excl_minor": %d, "amount_incl_minor": %d, "description": %s, "discount_minor": %d, "invoice_id": %s, '
    '"line_id": %s, "line_no": %d, "number": %s, "quantity": %s, "tax_minor": %d, "type": %s, "unit_price": %s}')


def _invoice_digest(fields: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    f = fields
    due, order = f["due_date"], f["order_id"]
    text = _INVOICE_JSON % (
        _enc(f["currency"]), _enc(f["customer_id"]), _enc(f["customer_number"]),
        "null" if due is None else _enc(str(due)), _enc(f["erp_status"]), _enc(str(f["invoice_date"])),
        _enc(f["number"]), "null" if order is None else _enc(order), f["remaining_minor"], f["total_excl_minor"],
        f["total_incl_minor"], f["total_tax_minor"],
    ) + ", ".join([_LINE_JSON % (
        ln["amount_excl_minor"], ln["amount_incl_minor"], _enc(ln["description"]), ln["discount_minor"],
        _enc(ln["invoice_id"]), _enc(ln["line_id"]), ln["line_no"], _enc(ln["number"]), _enc(ln["quantity"]),
        ln["tax_minor"], _enc(ln["type"]), _enc(ln["unit_price"]),
    ) for ln in lines]) + "]}"
    return hashlib.sha256(text.encode()).hexdigest()


def payweave_status(erp_status: str, remaining_minor: int, open_minor: int, paid_via_payweave: bool) -> str:
    """payweave's status of an ERP invoice: draft | open | paid | canceled."""
    if paid_via_payweave:
        return "paid"
    if erp_status in CANCELED_STATUSES:
        return "canceled"
    if erp_status not in POSTED_STATUSES:
        return "draft"
    if erp_status == "Paid" or remaining_minor <= 0 or open_minor <= 0:
        return "paid"
    return "open"


def record_issue(session: Session, company_id: str, entity: str, record_id: str, exc: PayweaveError,
                 now: datetime) -> None:
    row = session.get(ErpSyncIssueRow, (company_id, entity, record_id))
    if row is None:
        session.add(ErpSyncIssueRow(company_id=company_id, entity=entity, record_id=record_id, code=exc.code,
                                    message=exc.message, occurrences=1, first_seen_at=now, last_seen_at=now))
        return
    row.code, row.message = exc.code, exc.message
    row.occurrences += 1
    row.last_seen_at = now
    row.resolved_at = None


def _resolve_issues(session: Session, company_id: str, entity: str, record_ids: Iterable[str], now: datetime) -> None:
    ids = list(record_ids)
    if not ids:
        return
    for row in session.scalars(select(ErpSyncIssueRow).where(
            ErpSyncIssueRow.company_id == company_id, ErpSyncIssueRow.entity == entity,
            ErpSyncIssueRow.record_id.in_(ids), ErpSyncIssueRow.resolved_at.is_(None))):
        row.resolved_at = now


def _is_stale(incoming: datetime, stored: datetime | None) -> bool:
    return stored is not None and incoming < stored


# ============================================================================================
# customers
# ============================================================================================
def apply_customers(session: Session, company_id: str, records: Sequence[ErpCustomer], now: datetime) -> ApplyStats:
    stats = ApplyStats()
    ids = [r.customer_id for r in records]
    rows = {r.customer_id: r for r in session.scalars(
        select(ErpCustomerRow).where(ErpCustomerRow.company_id == company_id, ErpCustomerRow.customer_id.in_(ids))
        .with_for_update())}
    for rec in records:
        row = rows.get(rec.customer_id)
        values = {"number": rec.number, "name": rec.name[:200], "email": rec.email[:200],
                  "currency": (rec.currency or "").strip().upper()[:3], "blocked": rec.blocked[:20]}
        if row is None:
            row = ErpCustomerRow(company_id=company_id, customer_id=rec.customer_id, origin=ORIGIN_ERP, archived=False,
                                 erp_last_modified=rec.last_modified, created_at=now, updated_at=now, **values)
            session.add(row)
            rows[rec.customer_id] = row
            stats.inserted += 1
            continue
        if row.origin != ORIGIN_ERP:
            stats.ignored += 1
            continue
        if _is_stale(rec.last_modified, row.erp_last_modified):
            stats.stale += 1
            continue
        changed = any(getattr(row, k) != v for k, v in values.items())
        row.erp_last_modified = rec.last_modified
        if changed:
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
            stats.updated += 1
        else:
            stats.unchanged += 1
    return stats


# ============================================================================================
# invoices
# ============================================================================================
@dataclass
class _InvoiceValues:
    fields: dict[str, Any]
    lines: list[dict[str, Any]]
    digest: str


#: what :func:`_invoice_values` takes from the ERP for the invoice row (``fields``)
_INVOICE_FIELDS = ("number", "customer_id", "customer_number", "invoice_date", "due_date", "currency", "erp_status",
                   "order_id", "total_excl_minor", "total_tax_minor", "total_incl_minor", "remaining_minor")
_insert_invoices = BulkInsert(ErpInvoiceRow.__table__, (
    "company_id", "invoice_id", *_INVOICE_FIELDS, "origin", "archived", "paid_via_payweave", "ignored_erp_changes",
    "settled_minor", "settlements", "pdf_attempts", "erp_last_modified", "content_hash", "open_minor", "created_at",
    "updated_at", "status"))
_insert_lines = BulkInsert(ErpInvoiceLineRow.__table__, (
    "company_id", "invoice_id", "line_id", "line_no", "type", "number", "description", "quantity", "unit_price",
    "discount_minor", "amount_excl_minor", "tax_minor", "amount_incl_minor"))
_insert_payments = BulkInsert(ErpPaymentRow.__table__, (
    "company_id", "payment_id", "source", "invoice_id", "customer_id", "document_number", "posting_date",
    "amount_minor", "currency", "matched_writebacks", "erp_last_modified", "created_at"))


def _invoice_values(company_id: str, inv: ErpInvoice, default_currency: str | None) -> _InvoiceValues:
    currency = _currency(inv.currency, default_currency, f"Invoice {inv.number or inv.invoice_id}")
    invoice_id = inv.invoice_id
    try:  # every amount in minor units; the labels for a message only when one is refused
        fields = {
            "number": inv.number[:50], "customer_id": inv.customer_id, "customer_number": inv.customer_number[:50],
            "invoice_date": inv.invoice_date, "due_date": inv.due_date, "currency": currency,
            "erp_status": inv.status.strip()[:20], "order_id": inv.order_id,
            "total_excl_minor": to_minor_units(inv.total_excluding_tax, currency),
            "total_tax_minor": to_minor_units(inv.total_tax, currency),
            "total_incl_minor": to_minor_units(inv.total_including_tax, currency),
            "remaining_minor": to_minor_units(inv.remaining_amount, currency),
        }
        lines = [{
            "invoice_id": invoice_id, "line_id": ln.line_id, "line_no": ln.line_no,
            "type": ln.type[:30], "number": ln.number[:50], "description": ln.description[:250],
            "quantity": str(ln.quantity), "unit_price": str(ln.unit_price),
            "discount_minor": to_minor_units(ln.discount_amount, currency),
            "amount_excl_minor": to_minor_units(ln.amount_excluding_tax, currency),
            "tax_minor": to_minor_units(ln.tax_amount, currency),
            "amount_incl_minor": to_minor_units(ln.amount_including_tax, currency),
        } for ln in inv.lines]
    except MoneyError:
        _refuse_amounts(inv, currency)
        raise
    # the digest covers what is stored, without the company (the same text as ever: stored
    # hashes of earlier syncs stay comparable)
    digest = _invoice_digest(fields, lines)
    for line in lines:
        line["company_id"] = company_id
    return _InvoiceValues(fields, lines, digest)


def _refuse_amounts(inv: ErpInvoice, currency: str) -> None:
    """Raise :class:`RecordUnusable` naming the first amount of ``inv`` that ``currency`` refuses."""
    what = f"Invoice {inv.number or inv.invoice_id}"
    _minor(inv.total_excluding_tax, currency, f"{what} total excluding tax")
    _minor(inv.total_tax, currency, f"{what} tax")
    _minor(inv.total_including_tax, currency, f"{what} total")
    _minor(inv.remaining_amount, currency, f"{what} remaining amount")
    for ln in inv.lines:
        lw = f"{what} line {ln.line_no}"
        _minor(ln.discount_amount, currency, f"{lw} discount")
        _minor(ln.amount_excluding_tax, currency, f"{lw} amount")
        _minor(ln.tax_amount, currency, f"{lw} tax")
        _minor(ln.amount_including_tax, currency, f"{lw} amount including tax")


def _settled(fields: dict[str, Any]) -> int:
    """What the ERP shows as settled (payments + credits) on a posted invoice."""
    if fields["erp_status"] not in POSTED_STATUSES:
        return 0
    return fields["total_incl_minor"] - fields["remaining_minor"]


def unobserved_payweave_minor(writebacks: Iterable[ErpWritebackRow]) -> int:
    """payweave payments (not failed) for an invoice that the ERP's balance does not show yet."""
    return sum(w.amount_minor for w in writebacks
               if w.kind == "payment" and w.status in LIVE_WRITEBACK and not w.observed_in_erp
               and w.payment_failed_at is None)


def recompute_open(invoice: ErpInvoiceRow, writebacks: Sequence[ErpWritebackRow]) -> None:
    """open = ERP remaining - payweave payments the ERP does not show yet (never below 0)."""
    invoice.open_minor = max(invoice.remaining_minor - unobserved_payweave_minor(writebacks), 0)
    if invoice.paid_via_payweave and invoice.open_minor > 0:
        invoice.paid_via_payweave = False
        invoice.payweave_paid_at = None
    invoice.status = payweave_status(invoice.erp_status, invoice.remaining_minor, invoice.open_minor,
                                     invoice.paid_via_payweave)


def _match_writebacks(delta: int, writebacks: Sequence[ErpWritebackRow]) -> list[int]:
    """Recognise payweave's own payments in an ERP balance drop of ``delta`` (oldest first, each
    at most once); returns their ids and marks them observed.

    A payment counts once it is posted, or while still pending once a call carrying it reached
    the ERP (``attempts`` > 0): the ERP may have applied it and lost the answer, or applied it
    while payweave's commit of the outcome had not happened yet (a sync racing the write-back).
    Taking that drop for someone else's payment would subtract ours twice from the open amount
    and hide what is still due. A pending one that never reached the ERP is never matched."""
    matched: list[int] = []
    left = delta
    for wb in sorted(writebacks, key=lambda w: w.id):
        if left <= 0:
            break
        reached = wb.status == "posted" or (wb.status == "pending" and (wb.attempts or 0) > 0)
        if wb.kind == "payment" and reached and not wb.observed_in_erp and wb.amount_minor <= left:
            wb.observed_in_erp = True
            left -= wb.amount_minor
            matched.append(wb.id)
    return matched


def _latest(records: Sequence[Any], key: str) -> list[Any]:
    """One record per id (the latest change) when a page lists a record twice."""
    latest: dict[str, Any] = {}
    for rec in records:
        k = getattr(rec, key)
        if k not in latest or rec.last_modified >= latest[k].last_modified:
            latest[k] = rec
    return list(latest.values()) if len(latest) != len(records) else list(records)


def apply_invoices(session: Session, company_id: str, records: Sequence[ErpInvoice], now: datetime, *,
                   default_currency: str | None = None) -> ApplyStats:
    stats = ApplyStats()
    records = _latest(records, "invoice_id")
    ids = [r.invoice_id for r in records]
    rows = {r.invoice_id: r for r in session.scalars(
        select(ErpInvoiceRow).where(ErpInvoiceRow.company_id == company_id, ErpInvoiceRow.invoice_id.in_(ids))
        .with_for_update())}
    writebacks: dict[str, list[ErpWritebackRow]] = {}
    for wb in session.scalars(select(ErpWritebackRow).where(
            ErpWritebackRow.company_id == company_id, ErpWritebackRow.kind == "payment",
            ErpWritebackRow.invoice_id.in_(ids), ErpWritebackRow.status.in_(LIVE_WRITEBACK))):
        writebacks.setdefault(wb.invoice_id or "", []).append(wb)
    lines_to_replace: dict[str, list[dict[str, Any]]] = {}
    new_rows: list[dict[str, Any]] = []
    new_settlements: list[dict[str, Any]] = []
    resolved: list[str] = []
    for rec in records:
        try:
            values = _invoice_values(company_id, rec, default_currency)
        except RecordUnusable as exc:
            record_issue(session, company_id, SyncEntity.INVOICES.value, rec.invoice_id, exc, now)
            stats.issues += 1
            continue
        resolved.append(rec.invoice_id)
        row = rows.get(rec.invoice_id)
        wbs = writebacks.get(rec.invoice_id, [])
        if row is None:
            # new invoice: inserted in bulk below (with what BC already settled on it)
            fields = values.fields
            settled = _settled(fields)
            matched = _match_writebacks(settled, wbs) if settled > 0 else []
            open_minor = max(fields["remaining_minor"] - unobserved_payweave_minor(wbs), 0)
            new_rows.append({
                **fields, "company_id": company_id, "invoice_id": rec.invoice_id, "origin": ORIGIN_ERP,
                "archived": False, "paid_via_payweave": False, "ignored_erp_changes": 0, "settled_minor": settled,
                "settlements": 1 if settled else 0, "pdf_attempts": 0, "erp_last_modified": rec.last_modified,
                "content_hash": values.digest, "open_minor": open_minor, "created_at": now, "updated_at": now,
                "status": payweave_status(fields["erp_status"], fields["remaining_minor"], open_minor, False),
            })
            if settled:
                new_settlements.append(_settlement_values(
                    company_id, rec.invoice_id, fields["customer_id"], fields["number"], fields["currency"], 1, settled,
                    matched, rec.last_modified, now))
            lines_to_replace[rec.invoice_id] = values.lines
            stats.inserted += 1
            continue
        if row.origin != ORIGIN_ERP:
            stats.ignored += 1
            continue
        if row.paid_via_payweave:
            # Rule: once paid through payweave, later ERP edits are ignored (counted once each).
            # Posting a draft that payweave collected is no edit: its posted status and number
            # are taken (the payment is recorded in the ERP against the posted invoice).
            fields = values.fields
            if row.erp_status not in POSTED_STATUSES and fields["erp_status"] in POSTED_STATUSES:
                row.erp_status, row.number = fields["erp_status"], fields["number"]
                row.updated_at = now
            seen = row.last_ignored_change_at or row.erp_last_modified
            if seen is None or rec.last_modified > seen:
                if values.digest != row.content_hash:
                    row.ignored_erp_changes += 1
                row.last_ignored_change_at = rec.last_modified
            stats.ignored += 1
            continue
        if _is_stale(rec.last_modified, row.erp_last_modified):
            stats.stale += 1
            continue
        row.erp_last_modified = rec.last_modified
        if values.digest == row.content_hash:
            stats.unchanged += 1
            continue
        for key, value in values.fields.items():
            setattr(row, key, value)
        row.content_hash = values.digest
        row.updated_at = now
        _settle(session, row, _settled(values.fields), wbs, rec.last_modified, now)
        recompute_open(row, wbs)
        lines_to_replace[rec.invoice_id] = values.lines
        stats.updated += 1
    # new rows go in as executemany inserts (no ORM bookkeeping per row, no per-row parameter
    # compiling: the initial sync inserts every invoice and line of the history this way)
    if new_rows:
        _insert_invoices(session, new_rows)
    if new_settlements:
        _insert_payments(session, new_settlements)
    if lines_to_replace:
        session.flush()
        replaced = [i for i in lines_to_replace if i in rows]  # new invoices have no lines yet
        if replaced:
            session.execute(delete(ErpInvoiceLineRow).where(
                ErpInvoiceLineRow.company_id == company_id, ErpInvoiceLineRow.invoice_id.in_(replaced)))
        new_lines = [ln for lines in lines_to_replace.values() for ln in lines]
        if new_lines:
            _insert_lines(session, new_lines)
    _resolve_issues(session, company_id, SyncEntity.INVOICES.value, resolved, now)
    return stats


def _settle(session: Session, row: ErpInvoiceRow, settled: int, wbs: Sequence[ErpWritebackRow],
            last_modified: datetime, now: datetime) -> None:
    """Record a change of what the ERP shows as settled on the invoice (payments + credits)."""
    delta = settled - row.settled_minor
    if delta == 0:
        return
    matched = _match_writebacks(delta, wbs) if delta > 0 else []
    row.settlements += 1
    row.settled_minor = settled
    session.add(ErpPaymentRow(**_settlement_values(row.company_id, row.invoice_id, row.customer_id, row.number,
                                                   row.currency, row.settlements, delta, matched, last_modified, now)))


def _settlement_values(company_id: str, invoice_id: str, customer_id: str, number: str, currency: str, seq: int,
                       amount_minor: int, matched: list[int], last_modified: datetime, now: datetime) -> dict[str, Any]:
    """An ``erp_payments`` row for the ``seq``-th change of what BC settled on an invoice."""
    return {"company_id": company_id, "payment_id": f"balance:{invoice_id}:{seq}", "source": "erp_balance",
            "invoice_id": invoice_id, "customer_id": customer_id, "document_number": number,
            "posting_date": last_modified.date(), "amount_minor": amount_minor, "currency": currency,
            "matched_writebacks": matched, "erp_last_modified": last_modified, "created_at": now}


# ============================================================================================
# credit memos, payments
# ============================================================================================
def apply_credit_memos(session: Session, company_id: str, records: Sequence[ErpCreditMemo], now: datetime, *,
                       default_currency: str | None = None) -> ApplyStats:
    stats = ApplyStats()
    ids = [r.credit_memo_id for r in records]
    rows = {r.credit_memo_id: r for r in session.scalars(
        select(ErpCreditMemoRow).where(ErpCreditMemoRow.company_id == company_id,
                                       ErpCreditMemoRow.credit_memo_id.in_(ids)).with_for_update())}
    resolved = []
    for rec in records:
        what = f"Credit memo {rec.number or rec.credit_memo_id}"
        try:
            currency = _currency(rec.currency, default_currency, what)
            values = {"number": rec.number[:50], "customer_id": rec.customer_id, "invoice_id": rec.invoice_id,
                      "currency": currency, "erp_status": rec.status.strip()[:20],
                      "total_incl_minor": _minor(rec.total_including_tax, currency, f"{what} total"),
                      "credit_memo_date": rec.credit_memo_date}
        except RecordUnusable as exc:
            record_issue(session, company_id, SyncEntity.CREDIT_MEMOS.value, rec.credit_memo_id, exc, now)
            stats.issues += 1
            continue
        resolved.append(rec.credit_memo_id)
        row = rows.get(rec.credit_memo_id)
        if row is None:
            row = ErpCreditMemoRow(company_id=company_id, credit_memo_id=rec.credit_memo_id, origin=ORIGIN_ERP,
                                   erp_last_modified=rec.last_modified, created_at=now, updated_at=now, **values)
            session.add(row)
            rows[rec.credit_memo_id] = row
            stats.inserted += 1
            continue
        if _is_stale(rec.last_modified, row.erp_last_modified):
            stats.stale += 1
            continue
        row.erp_last_modified = rec.last_modified
        if all(getattr(row, k) == v for k, v in values.items()):
            stats.unchanged += 1
            continue
        for k, v in values.items():
            setattr(row, k, v)
        row.updated_at = now
        stats.updated += 1
    _resolve_issues(session, company_id, SyncEntity.CREDIT_MEMOS.value, resolved, now)
    return stats


def apply_payments(session: Session, company_id: str, records: Sequence[ErpPayment], now: datetime, *,
                   default_currency: str | None = None) -> ApplyStats:
    """Payments the plugin lists (``source='erp'``): inserted once, corrected in place, never deleted."""
    stats = ApplyStats()
    ids = [f"erp:{r.payment_id}" for r in records]
    rows = {r.payment_id: r for r in session.scalars(
        select(ErpPaymentRow).where(ErpPaymentRow.company_id == company_id, ErpPaymentRow.payment_id.in_(ids))
        .with_for_update())}
    for rec in records:
        key = f"erp:{rec.payment_id}"
        try:
            currency = _currency(rec.currency, default_currency, f"Payment {rec.document_number or rec.payment_id}")
            values = {"invoice_id": rec.invoice_id, "customer_id": rec.customer_id,
                      "document_number": rec.document_number[:50], "posting_date": rec.posting_date,
                      "amount_minor": _minor(rec.amount, currency, f"Payment {rec.document_number}"),
                      "currency": currency}
        except RecordUnusable as exc:
            record_issue(session, company_id, SyncEntity.PAYMENTS.value, rec.payment_id, exc, now)
            stats.issues += 1
            continue
        row = rows.get(key)
        if row is None:
            session.add(ErpPaymentRow(company_id=company_id, payment_id=key, source="erp", matched_writebacks=[],
                                      erp_last_modified=rec.last_modified, created_at=now, **values))
            stats.inserted += 1
        elif _is_stale(rec.last_modified, row.erp_last_modified):
            stats.stale += 1
        elif all(getattr(row, k) == v for k, v in values.items()):
            row.erp_last_modified = rec.last_modified
            stats.unchanged += 1
        else:
            for k, v in values.items():
                setattr(row, k, v)
            row.erp_last_modified = rec.last_modified
            stats.updated += 1
    return stats


# ============================================================================================
# document events (DESIGN 5a pull): into the inbox, dispatched to the engine afterwards
# ============================================================================================
def apply_document_events(session: Session, company_id: str, records: Sequence[DocumentEvent], now: datetime) -> ApplyStats:
    stats = ApplyStats()
    ids = [e.event_id for e in records]
    seen = set(session.scalars(select(ErpDocumentEventRow.event_id).where(
        ErpDocumentEventRow.company_id == company_id, ErpDocumentEventRow.event_id.in_(ids))))
    for event in records:
        if event.event_id in seen:
            stats.unchanged += 1
            continue
        seen.add(event.event_id)
        session.add(ErpDocumentEventRow(
            company_id=company_id, event_id=event.event_id, event_type=event.type.value,
            document_type=event.document.document_type.value, document_id=event.document.document_id,
            document_number=event.document.number[:50], occurred_at=event.occurred_at,
            payload=event.model_dump(mode="json"), status="pending", attempts=0, created_at=now,
        ))
        stats.inserted += 1
    return stats


def apply_page(session: Session, company_id: str, entity: SyncEntity, records: Sequence[Any], now: datetime, *,
               default_currency: str | None = None) -> ApplyStats:
    """Apply one page of ``entity`` records (typed per the contract) and return the counts."""
    expected = {SyncEntity.CUSTOMERS: ErpCustomer, SyncEntity.INVOICES: ErpInvoice,
                SyncEntity.CREDIT_MEMOS: ErpCreditMemo, SyncEntity.PAYMENTS: ErpPayment,
                SyncEntity.DOCUMENT_EVENTS: DocumentEvent}[entity]
    for rec in records:
        if not isinstance(rec, expected):
            from payweave.core.plugins import PluginBug

            raise PluginBug(f"A {entity.value} page held a {type(rec).__name__}, expected {expected.__name__}.")
    if entity is SyncEntity.CUSTOMERS:
        return apply_customers(session, company_id, records, now)
    if entity is SyncEntity.INVOICES:
        return apply_invoices(session, company_id, records, now, default_currency=default_currency)
    if entity is SyncEntity.CREDIT_MEMOS:
        return apply_credit_memos(session, company_id, records, now, default_currency=default_currency)
    if entity is SyncEntity.PAYMENTS:
        return apply_payments(session, company_id, records, now, default_currency=default_currency)
    return apply_document_events(session, company_id, records, now)

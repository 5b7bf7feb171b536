"""Bulk inserts (the initial sync's path for new rows) store what a Core insert stores, on SQLite
and PostgreSQL, and refuse a row whose columns are not exactly the statement's."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from payweave.core.store import Store
from payweave.core.sync.bulk import BulkInsert
from payweave.core.sync.models import ErpInvoiceRow, ErpPaymentRow

AT = datetime(2026, 3, 2, 9, 30, 15, 123000, tzinfo=UTC)


def _payment(n: int, **kw: object) -> dict[str, object]:
    return {"company_id": "co", "payment_id": f"balance:inv{n}:1", "source": "erp_balance", "invoice_id": f"inv{n}",
            "customer_id": "cust", "document_number": f"PS-INV{n}", "posting_date": date(2026, 3, 1),
            "amount_minor": 10**12 + n, "currency": "EUR", "matched_writebacks": [7, 8],
            "erp_last_modified": AT, "created_at": AT, **kw}


PAYMENT_COLUMNS = tuple(_payment(0))


def test_rows_read_back_as_a_core_insert_stores_them(store: Store) -> None:
    bulk = BulkInsert(ErpPaymentRow.__table__, PAYMENT_COLUMNS)
    # another zone's offset is stored as the same instant in UTC
    other_zone = AT.astimezone(timezone(timedelta(hours=-5)))
    bulk_rows = [_payment(1), _payment(2, erp_last_modified=other_zone, invoice_id=None, matched_writebacks=[])]
    core_rows = [_payment(3), _payment(4, erp_last_modified=other_zone, invoice_id=None, matched_writebacks=[])]
    with store.transaction() as s:
        bulk(s, bulk_rows)
        s.execute(insert(ErpPaymentRow.__table__), core_rows)
    with store.transaction() as s:
        got = {r.payment_id: r for r in s.scalars(select(ErpPaymentRow).where(ErpPaymentRow.company_id == "co"))}
    columns = [c for c in PAYMENT_COLUMNS if c not in ("payment_id", "invoice_id", "document_number", "amount_minor")]
    for mine, theirs in (("balance:inv1:1", "balance:inv3:1"), ("balance:inv2:1", "balance:inv4:1")):
        assert {c: getattr(got[mine], c) for c in columns} == {c: getattr(got[theirs], c) for c in columns}
    assert got["balance:inv1:1"].erp_last_modified == AT and got["balance:inv2:1"].erp_last_modified == AT
    assert got["balance:inv1:1"].matched_writebacks == [7, 8] and got["balance:inv2:1"].invoice_id is None
    assert got["balance:inv1:1"].amount_minor == 10**12 + 1


def test_booleans_and_nulls_of_an_invoice_row(store: Store) -> None:
    row = {"company_id": "co", "invoice_id": "i1", "number": "N1", "customer_id": "c", "customer_number": "",
           "invoice_date": date(2026, 1, 31), "due_date": None, "currency": "JPY", "erp_status": "Open",
           "order_id": None, "total_excl_minor": 100, "total_tax_minor": 0, "total_incl_minor": 100,
           "remaining_minor": 100, "origin": "erp", "archived": False, "paid_via_payweave": True,
           "ignored_erp_changes": 0, "settled_minor": 0, "settlements": 0, "pdf_attempts": 0,
           "erp_last_modified": AT, "content_hash": "h", "open_minor": 100, "created_at": AT, "updated_at": AT,
           "status": "open"}
    with store.transaction() as s:
        BulkInsert(ErpInvoiceRow.__table__, tuple(row))(s, [row])
    with store.transaction() as s:
        got = s.get(ErpInvoiceRow, ("co", "i1"))
        assert got is not None
        assert got.paid_via_payweave is True and got.archived is False and got.due_date is None
        assert got.invoice_date == date(2026, 1, 31) and got.created_at == AT and got.pdf_sha256 is None


def test_a_row_with_other_columns_is_refused(store: Store) -> None:
    bulk = BulkInsert(ErpPaymentRow.__table__, PAYMENT_COLUMNS)
    extra = {**_payment(1), "note": "x"}
    missing = {k: v for k, v in _payment(2).items() if k != "currency"}
    with store.transaction() as s:
        with pytest.raises(ValueError, match="expected"):
            bulk(s, [_payment(0), extra])
        with pytest.raises((ValueError, KeyError)):
            bulk(s, [missing])
    with pytest.raises(ValueError, match="no column"):
        BulkInsert(ErpPaymentRow.__table__, (*PAYMENT_COLUMNS, "note"))

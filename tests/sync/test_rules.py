"""The sync rules (DESIGN section 5) end to end against the BC sandbox, plus the rule engine's
guards (stale records, unusable records) on their own."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from payweave.core.sync.models import ErpCustomerRow, ErpInvoiceLineRow, ErpInvoiceRow, ErpPaymentRow, ErpSyncIssueRow
from payweave.core.sync.rules import _INVOICE_FIELDS, _digest, _invoice_digest, _invoice_values, apply_invoices
from payweave.hooks.models import ErpInvoice, InvoiceLine, Money


def _row(store, company_id, invoice_id) -> ErpInvoiceRow:
    with store.transaction() as s:
        row = s.get(ErpInvoiceRow, (company_id, invoice_id))
        assert row is not None
        s.expunge(row)
        return row


def _settlements(store, invoice_id) -> list[int]:
    with store.transaction() as s:
        return list(s.scalars(select(ErpPaymentRow.amount_minor).where(ErpPaymentRow.invoice_id == invoice_id)
                              .order_by(ErpPaymentRow.payment_id)))


def test_unpaid_invoices_take_amount_and_due_date_changes_from_bc(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    draft = bc.draft_invoice()
    line = draft.lines[0]
    before = service.invoice(cid, draft.id)
    bc.patch_document(draft.id, {"lines": [{"lineId": line.id, "quantity": str(line.quantity + 3)}],
                                 "dueDate": "2026-06-30"})
    posted = bc.open_invoice()
    bc.patch_document(posted.id, {"dueDate": "2026-07-15"})

    report = service.run_sync(cid)

    assert report.counter("delta", "invoices").updated == 2
    after = service.invoice(cid, draft.id)
    assert after.total == bc.invoices()[draft.id].total_incl != before.total
    assert after.due_date == date(2026, 6, 30)
    with store.transaction() as s:
        qty = s.scalar(select(ErpInvoiceLineRow.quantity).where(ErpInvoiceLineRow.line_id == line.id))
    assert Decimal(qty) == line.quantity  # the sandbox object itself was changed to +3
    assert service.invoice(cid, posted.id).due_date == date(2026, 7, 15)
    bc.assert_mirrored(store)


def test_partial_payments_and_credits_in_bc_lower_the_open_amount(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    inv = bc.open_invoice(minimum=Decimal("100"))
    total = inv.total_incl
    assert service.invoice(cid, inv.id).open == total

    bc.pay(inv.id, "40.00")
    service.run_sync(cid)
    view = service.invoice(cid, inv.id)
    assert (view.open, view.remaining, view.status) == (total - 40, total - 40, "open")

    bc.credit(inv.id, "10.00")
    service.run_sync(cid)
    view = service.invoice(cid, inv.id)
    assert (view.open, view.settled, view.status) == (total - 50, Decimal(50), "open")
    assert _settlements(store, inv.id) == [4000, 1000]  # each BC change recorded once

    service.run_sync(cid)  # re-reading the same state records nothing again
    assert _settlements(store, inv.id) == [4000, 1000]

    bc.pay(inv.id, str(total - 50))
    service.run_sync(cid)
    view = service.invoice(cid, inv.id)
    assert (view.open, view.status, view.erp_status) == (0, "paid", "Paid")
    assert sum(_settlements(store, inv.id)) == int(total * 100)
    bc.assert_mirrored(store)


def test_an_invoice_paid_through_payweave_ignores_later_bc_edits(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    inv = bc.open_invoice()
    due_before = service.invoice(cid, inv.id).due_date
    wb = service.record_payment(cid, payment_key="tx-1:capture-1", invoice_id=inv.id,
                                amount=Money(amount=inv.total_incl, currency="USD"), process=False)
    assert wb.status == "pending"
    assert service.invoice(cid, inv.id).paid_via_payweave

    bc.patch_document(inv.id, {"dueDate": "2027-01-31"})
    bc.pay(inv.id, "5.00")  # and someone posts a payment in BC
    service.run_sync(cid)
    service.run_sync(cid)  # the overlap re-read must not count the same edit twice

    view = service.invoice(cid, inv.id)
    assert (view.status, view.open, view.due_date) == ("paid", 0, due_before)
    assert view.remaining == inv.total_incl  # BC's later numbers were not taken over
    assert view.ignored_erp_changes == 1
    assert _settlements(store, inv.id) == []


def test_records_created_in_payweave_are_never_written_to_bc(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    customers_before, invoices_before = len(bc.customers()), len(bc.invoices())
    customer = service.create_local_customer(cid, name="Walk-in Customer", email="walk-in@example.com")
    invoice = service.create_local_invoice(cid, customer_id=customer, number="PW-0001",
                                           amount=Money(amount="99.90", currency="USD"))
    bc.state.stats.reset()

    service.run_sync(cid)
    service.run_sync(cid, full=True)
    wb = service.record_payment(cid, payment_key="tx-local", invoice_id=invoice,
                                amount=Money(amount="99.90", currency="USD"))

    assert wb.status == "skipped" and "created in payweave" in (wb.last_error or "")
    assert (len(bc.customers()), len(bc.invoices())) == (customers_before, invoices_before)
    snapshot = bc.state.stats.snapshot()
    # a $batch is a POST, but the delta's batches hold only reads
    writes = [r for r in snapshot["requests"] if r["method"] != "GET" and r["entitySet"] != "$batch"]
    writes += [r for r in snapshot["batchOperations"] if r["method"] != "GET"]
    assert writes == []
    with store.transaction() as s:
        local = s.get(ErpInvoiceRow, (cid, invoice))
        assert local.origin == "payweave" and local.number == "PW-0001" and not local.archived
        assert s.get(ErpCustomerRow, (cid, customer)).origin == "payweave"


def test_deletions_in_bc_do_not_archive_in_payweave(bc, store):
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    draft = bc.draft_invoice()
    before = service.invoice(cid, draft.id)
    bc.document_action(draft.id, "delete")
    assert draft.id not in bc.invoices()

    service.run_sync(cid)
    service.run_sync(cid, full=True)

    after = service.invoice(cid, draft.id)
    assert after == before and not after.archived


def test_full_resync_repairs_a_lost_row_and_stays_connected(bc, sqlite_store):
    store = sqlite_store
    service = bc.service(store)
    cid = bc.company.id
    service.connect()
    victim = bc.open_invoice()
    with store.transaction() as s:
        s.query(ErpInvoiceLineRow).filter_by(invoice_id=victim.id).delete()
        s.query(ErpPaymentRow).filter_by(invoice_id=victim.id).delete()
        s.delete(s.get(ErpInvoiceRow, (cid, victim.id)))
    statuses = []
    report = service.run_sync(cid, full=True, progress=lambda e: statuses.append(service.connection(cid).status))
    assert set(statuses) == {"connected"}
    assert report.records("full", "invoices") == len(bc.invoices())
    bc.assert_mirrored(store)


# ------------------------------------------------------------------------------------------- guards
def _invoice(lm: datetime, *, remaining: str = "100.00", due: date | None = None, total: str = "100.00") -> ErpInvoice:
    return ErpInvoice(invoice_id="inv-1", number="PS-INV1", customer_id="c-1", invoice_date=date(2026, 1, 2),
                      due_date=due, currency="USD", status="Open", total_excluding_tax=total, total_tax="0",
                      total_including_tax=total, remaining_amount=remaining, last_modified=lm,
                      lines=(InvoiceLine(line_id="l-1", line_no=10000, type="Item", amount_excluding_tax=total,
                                         amount_including_tax=total),))


def test_an_older_version_never_overwrites_a_newer_one(sqlite_store):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    t1, t2 = now, now + timedelta(seconds=5)
    with sqlite_store.transaction() as s:
        apply_invoices(s, "CO", [_invoice(t2, remaining="40.00", due=date(2026, 4, 1))], now)
    with sqlite_store.transaction() as s:
        stats = apply_invoices(s, "CO", [_invoice(t1, remaining="100.00", due=date(2026, 3, 1))], now)
    assert (stats.stale, stats.updated) == (1, 0)
    row = _row(sqlite_store, "CO", "inv-1")
    assert (row.remaining_minor, row.due_date, row.settled_minor) == (4000, date(2026, 4, 1), 6000)


def test_a_record_that_cannot_be_stored_is_an_issue_not_a_stop(sqlite_store):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    bad = _invoice(now, remaining="10.005")  # three decimals in USD
    good = _invoice(now).model_copy(update={"invoice_id": "inv-2", "number": "PS-INV2"})
    with sqlite_store.transaction() as s:
        stats = apply_invoices(s, "CO", [bad, good], now)
    assert (stats.issues, stats.inserted) == (1, 1)
    with sqlite_store.transaction() as s:
        issue = s.get(ErpSyncIssueRow, ("CO", "invoices", "inv-1"))
        assert issue is not None and "decimals" in issue.message and issue.resolved_at is None
    with sqlite_store.transaction() as s:  # BC corrected it: stored, issue resolved
        apply_invoices(s, "CO", [_invoice(now + timedelta(seconds=1), remaining="10.01")], now)
    with sqlite_store.transaction() as s:
        assert s.get(ErpSyncIssueRow, ("CO", "invoices", "inv-1")).resolved_at is not None
        assert s.get(ErpInvoiceRow, ("CO", "inv-1")).remaining_minor == 1001


def test_posting_a_draft_collected_through_payweave_takes_its_posted_status_and_number(sqlite_store):
    """A draft invoice paid through a payment link, then posted in BC: the freeze keeps the
    amounts, but the posted status and number are taken (the payment is recorded against it)."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    draft = _invoice(now).model_copy(update={"status": "Draft", "number": "S-INV1"})
    with sqlite_store.transaction() as s:
        apply_invoices(s, "CO", [draft], now)
    with sqlite_store.transaction() as s:
        row = s.get(ErpInvoiceRow, ("CO", "inv-1"))
        row.paid_via_payweave = True
    posted = _invoice(now + timedelta(seconds=5), total="90.00", remaining="90.00")  # Open, PS-INV1
    with sqlite_store.transaction() as s:
        stats = apply_invoices(s, "CO", [posted], now)
    assert stats.ignored == 1
    row = _row(sqlite_store, "CO", "inv-1")
    assert (row.erp_status, row.number, row.total_incl_minor) == ("Open", "PS-INV1", 10000)
    assert row.ignored_erp_changes == 1 and row.paid_via_payweave


# ------------------------------------------------------------------------------ the content hash
_TEXT = st.text(max_size=12)  # any characters: quotes, backslashes, controls, beyond ASCII
_INT = st.integers(min_value=-(10**30), max_value=10**30)


@settings(max_examples=300, deadline=None)
@given(fields=st.fixed_dictionaries({
    "number": _TEXT, "customer_id": _TEXT, "customer_number": _TEXT, "invoice_date": st.dates(),
    "due_date": st.none() | st.dates(), "currency": _TEXT, "erp_status": _TEXT, "order_id": st.none() | _TEXT,
    "total_excl_minor": _INT, "total_tax_minor": _INT, "total_incl_minor": _INT, "remaining_minor": _INT}),
    lines=st.lists(st.fixed_dictionaries({
        "invoice_id": _TEXT, "line_id": _TEXT, "line_no": _INT, "type": _TEXT, "number": _TEXT, "description": _TEXT,
        "quantity": _TEXT, "unit_price": _TEXT, "discount_minor": _INT, "amount_excl_minor": _INT, "tax_minor": _INT,
        "amount_incl_minor": _INT}), max_size=3))
def test_the_invoice_hash_is_the_hash_of_its_json_as_ever(fields, lines):
    """Stored content hashes stay comparable: the templated text is json.dumps(sort_keys=True)'s."""
    assert _invoice_digest(fields, lines) == _digest({"f": fields, "l": lines})


def test_invoice_values_hash_what_is_stored():
    inv = ErpInvoice(invoice_id="i-1", number="PS-1", customer_id="c", invoice_date=date(2026, 1, 2), currency="EUR",
                     status="Open", total_excluding_tax="10.00", total_tax="1.90", total_including_tax="11.90",
                     remaining_amount="11.90", last_modified=datetime(2026, 1, 2, tzinfo=UTC),
                     lines=(InvoiceLine(line_id="l-1", line_no=10000, type="Item", description="Stühle \"A\"",
                                        quantity="2", unit_price="5.00", amount_excluding_tax="10.00",
                                        tax_amount="1.90", amount_including_tax="11.90"),))
    values = _invoice_values("co", inv, None)
    assert set(values.fields) == set(_INVOICE_FIELDS)
    stored_lines = [{k: v for k, v in ln.items() if k != "company_id"} for ln in values.lines]
    assert values.digest == _digest({"f": values.fields, "l": stored_lines})

"""The connector's reads return the contract's models, page by page, resumable by cursor."""
from __future__ import annotations

from decimal import Decimal

import pytest
from payweave.hooks.errors import NotSupported, RemoteNotFound
from payweave.hooks.models import ErpCreditMemo, ErpCustomer, ErpInvoice, SyncCursor, SyncEntity


def test_invoices_stream_with_lines_as_contract_models(env):
    connector = env.connector()
    pages = list(connector.read_changes(SyncEntity.INVOICES, SyncCursor(), page_size=10))
    invoices = [r for p in pages for r in p.records]
    assert all(isinstance(r, ErpInvoice) for r in invoices)
    assert {r.invoice_id for r in invoices} == set(env.company.tables["invoices"].by_id)
    for inv in invoices:
        stored = env.company.tables["invoices"].get(inv.invoice_id)
        assert inv.total_including_tax == stored.total_incl and isinstance(inv.total_including_tax, Decimal)
        assert sum(ln.amount_including_tax for ln in inv.lines) == inv.total_including_tax
        assert [ln.line_no for ln in inv.lines] == sorted(ln.line_no for ln in inv.lines)
        assert inv.remaining_amount == (stored.remaining if stored.posted else stored.total_incl)
        assert inv.status in ("Draft", "Open", "Paid", "In Review")
    assert [p.requests for p in pages] == [1] * len(pages)
    assert all(p.next_cursor and p.next_cursor.page_token for p in pages[:-1]) and pages[-1].next_cursor is None
    assert all(p.high_water == max(r.last_modified for r in p.records) for p in pages)
    # resume from the second page's cursor: the same records as pages 3.., no more, no less
    resumed = [r.invoice_id for p in connector.read_changes(SyncEntity.INVOICES, pages[1].next_cursor, 10)
               for r in p.records]
    assert resumed == [r.invoice_id for p in pages[2:] for r in p.records]


def test_delta_since_and_until_windows(env):
    connector = env.connector()
    customers = [r for p in connector.read_changes(SyncEntity.CUSTOMERS, SyncCursor(), 100) for r in p.records]
    assert all(isinstance(c, ErpCustomer) for c in customers)
    cust = env.company.tables["customers"].get(customers[0].customer_id)
    env.state.clock.advance(60)
    mark = env.state.clock.now()
    env.state.clock.advance(1)
    env.state.update_customer(env.company, cust, email="new@example.com")
    changed = [r for p in connector.read_changes(SyncEntity.CUSTOMERS, SyncCursor(since=mark), 100) for r in p.records]
    assert [(c.customer_id, c.email) for c in changed] == [(cust.id, "new@example.com")]
    before = [r for p in connector.read_changes(SyncEntity.CUSTOMERS, SyncCursor(until=mark), 100) for r in p.records]
    assert cust.id not in {c.customer_id for c in before} and len(before) == len(customers) - 1


def test_credit_memos_and_payments(env):
    connector = env.connector()
    memos = [r for p in connector.read_changes(SyncEntity.CREDIT_MEMOS, SyncCursor(), 100) for r in p.records]
    assert memos and all(isinstance(m, ErpCreditMemo) for m in memos)
    assert all(m.invoice_id in env.company.tables["invoices"].by_id for m in memos)
    with pytest.raises(NotSupported):
        connector.read_changes(SyncEntity.PAYMENTS, SyncCursor(), 100)


def test_invoice_pdf_and_ledger_accounts(env):
    connector = env.connector()
    inv = next(d for d in env.company.tables["invoices"].by_id.values() if d.posted)
    pdf = connector.invoice_pdf(inv.id)
    assert pdf.startswith(b"%PDF-") and inv.number.encode() in pdf
    with pytest.raises(RemoteNotFound):
        connector.invoice_pdf("6b7d6a1e-0000-4000-8000-000000000000")
    accounts = connector.ledger_accounts()
    kinds = {(a.number, a.kind) for a in accounts}
    assert ("10900", "gl_account") in kinds and ("CHECKING", "bank_account") in kinds
    assert connector.client.stats.by_entity()["accounts"] == 1


def test_requests_are_counted_per_entity(env):
    connector = env.connector(page_size=20)
    for _ in connector.read_changes(SyncEntity.INVOICES, SyncCursor(), 20):
        pass
    n_inv = -(-len(env.company.tables["invoices"]) // 20)
    assert connector.client.stats.by_entity() == {"salesInvoices": n_inv}
    server_side = env.state.stats.total(client=env.client_id, entity_set="salesInvoices")
    assert server_side == n_inv


def test_stream_records_are_what_validation_builds(env):
    """The sync streams' records are built without re-validating fields the mapping converted
    itself; each must equal the contract model validated from the same values."""
    from payweave.plugins.erp_businesscentral import mapping

    assert all(mapping._CONSTRUCTIBLE.values())  # the fast path is in use with this pydantic
    connector = env.connector()
    for entity in (SyncEntity.CUSTOMERS, SyncEntity.INVOICES, SyncEntity.CREDIT_MEMOS):
        records = [r for p in connector.read_changes(entity, SyncCursor(), 100) for r in p.records]
        assert records
        for rec in records:
            validated = type(rec).model_validate(rec.model_dump())
            assert rec == validated and rec.model_fields_set == validated.model_fields_set
            assert rec.model_dump_json() == validated.model_dump_json()
            if isinstance(rec, ErpInvoice):
                assert rec.lines and all(ln == type(ln).model_validate(ln.model_dump()) for ln in rec.lines)

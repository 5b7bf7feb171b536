"""The seed generator: deterministic by seed, internally consistent, fast enough to scale."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from payweave.plugins.erp_businesscentral import bcjson
from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState, documents, odata, seed
from payweave.plugins.erp_businesscentral.sandbox.resources import STANDARD_SETS, Ctx

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def build(seed_value: int, **kw):
    state = SandboxState(clock=SandboxClock(start=NOW, frozen=True), webhook_delivery="manual")
    result = seed(state, seed=seed_value, customers=6, items=8, invoices_per_year=40, years=2, orders=4,
                  credit_memos=3, **kw)
    return state, result


def dump(state: SandboxState) -> str:
    """Everything the API would show for the main sets, serialized exactly as served."""
    company = next(iter(state.companies.values()))
    out = {}
    for name, expand in (("customers", None), ("items", None), ("salesInvoices", ["salesInvoiceLines"]),
                         ("salesOrders", ["salesOrderLines"]), ("salesCreditMemos", None), ("accounts", None)):
        es = STANDARD_SETS[name]
        ctx = Ctx(state, "v2.0", "http://x", company, None, f"companies({company.id})/{name}")
        out[name] = [es.serialize(ctx, rec, None, expand) for _, rec in es.source(ctx).scan(None, None, None)]
    return bcjson.dumps_prepared(out)


def test_same_seed_same_data_including_ids():
    a, ra = build(42)
    b, rb = build(42)
    assert ra.as_json() == rb.as_json()
    assert dump(a) == dump(b)
    c, _ = build(43)
    assert dump(a) != dump(c)


def test_seeded_data_is_consistent():
    state, result = build(7)
    company = next(iter(state.companies.values()))
    invoices = list(company.tables["invoices"].by_id.values())
    posted = [d for d in invoices if d.posted]
    assert len(posted) == result.invoices == 80
    assert result.open_invoices + result.paid_invoices == 80
    for doc in invoices:
        precision = documents.doc_precision(doc, company.precision)
        sums = [documents.line_amounts(ln, doc.prices_include_tax, precision) for ln in doc.lines]
        assert doc.total_incl == sum((a.net_incl for a in sums), Decimal(0))
        assert Decimal(0) <= doc.remaining <= doc.total_incl
        assert doc.lm <= state.now_ms()
        assert NOW.date() - timedelta(days=2 * 365) <= doc.document_date <= NOW.date()
    numbers = sorted(d.number for d in posted)
    assert numbers == [f"PS-INV{i:06d}" for i in range(1, 81)]
    # credit memos are applied to their invoices; balances add up
    for credit in company.tables["creditMemos"].by_id.values():
        inv = company.tables["invoices"].get(credit.applies_to_id)
        assert inv is not None and inv.customer is credit.customer
    for cust in company.tables["customers"].by_id.values():
        assert cust.balance == state.customer_balance(company, cust)
    assert sum(1 for d in posted if d.remaining == 0) == result.paid_invoices


def test_seed_scales_and_delta_pages_stay_cheap():
    state = SandboxState(clock=SandboxClock(start=NOW, frozen=True), webhook_delivery="manual")
    # how fast seeding is belongs to the benchmarks (bench/), not to a timed test: this checks the work
    result = seed(state, seed=5, customers=200, items=100, invoices_per_year=10_000, years=2, orders=20,
                  credit_memos=20, today=date(2026, 3, 2))
    assert result.invoices == 20_000 and result.invoice_lines > 80_000
    company = next(iter(state.companies.values()))
    es = STANDARD_SETS["salesInvoices"]
    ctx = Ctx(state, "v2.0", "http://x", company, None, "x")
    # a delta page bisects into the (lastModified, id) index: count the records it looks at
    looked_at = []
    recent = "lastModifiedDateTime gt 2026-02-25T00:00:00Z"
    node = odata.parse_filter(recent)
    predicate = odata.compile_filter(node, es.fields(ctx), es.type_name)
    page = odata.run_page(es.source(ctx), lambda r: looked_at.append(r) or predicate(r), node, 50, None, None, None)
    assert len(page.records) == 50 and page.next_token
    assert len(looked_at) <= 51  # the page plus one look-ahead, not the 20,000 invoices

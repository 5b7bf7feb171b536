"""Deterministic test data for the BC sandbox.

``seed(state, seed=7, customers=50, invoices_per_year=1000, years=2, ...)`` builds companies
with customers, items, posted invoices over ``years`` up to the sandbox clock's date (older ones
mostly paid, recent ones open or partly paid), a few draft invoices, open and released sales
orders, return orders and posted credit memos applied to invoices.

Same seed and same sandbox clock date -> identical data, ids included (ids come from the seeded
generator). Built directly into the tables (no per-record index inserts, one sort per table),
so 100,000 invoices with 5 lines each seed in seconds. Seeded history has no G/L or customer
ledger entries (only what is posted afterwards creates them); invoice ``remainingAmount`` and
customer ``balanceDue`` reflect the seeded payments and credits. The companion API's event log
holds a ``Created`` (and ``Released``) entry for every seeded unposted document.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from . import documents
from .model import ZERO, Company, Customer, DocEvent, Item, Line, SalesDoc, round_amount
from .state import KIND_SERIES, LineSpec, SandboxState

_ADJ = ("Adatum", "Fabrikam", "Contoso", "Litware", "Northwind", "Tailspin", "Wingtip", "Proseware", "Alpine",
        "Coho", "Relecloud", "Trey", "Woodgrove", "Lamna", "Margie's", "Blue Yonder", "Fourth Coffee", "Humongous")
_NOUN = ("Trading", "Supplies", "Logistics", "Design", "Systems", "Foods", "Furniture", "Outfitters", "Labs",
         "Interiors", "Partners", "Studio", "Electric", "Works")
_SUFFIX = ("Inc.", "Ltd.", "LLC", "GmbH", "Corp.", "& Co.")
_ITEM_ADJ = ("Oak", "Steel", "Glass", "Walnut", "Leather", "Aluminium", "Bamboo", "Marble", "Linen", "Copper")
_ITEM_NOUN = ("Desk", "Chair", "Lamp", "Cabinet", "Shelf", "Table", "Stool", "Sofa", "Bench", "Mirror", "Rug")
_CITIES = (
    ("Atlanta", "GA", "US", "31772"), ("Chicago", "IL", "US", "61236"), ("Miami", "FL", "US", "37125"),
    ("Seattle", "WA", "US", "98101"), ("Denver", "CO", "US", "80202"), ("Boston", "MA", "US", "02108"),
    ("Berlin", "", "DE", "10115"), ("Munich", "", "DE", "80331"), ("London", "", "GB", "WC1 3DG"),
)
_TAX_RATES = (Decimal(0), Decimal(5), Decimal(10))
_QTYS = tuple(Decimal(q) for q in range(0, 21))
_DISCOUNTS = (ZERO, Decimal(5), Decimal(10))
_SECONDS_PER_DAY = 86_400
_SEQS = tuple((k + 1) * 10000 for k in range(256))  # shared int objects for line numbers


@dataclass
class SeedResult:
    companies: list[str] = field(default_factory=list)
    customers: int = 0
    items: int = 0
    invoices: int = 0
    draft_invoices: int = 0
    invoice_lines: int = 0
    orders: int = 0
    return_orders: int = 0
    credit_memos: int = 0
    open_invoices: int = 0
    paid_invoices: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "companies": self.companies, "customers": self.customers, "items": self.items, "invoices": self.invoices,
            "draftInvoices": self.draft_invoices, "invoiceLines": self.invoice_lines, "orders": self.orders,
            "returnOrders": self.return_orders, "creditMemos": self.credit_memos, "openInvoices": self.open_invoices,
            "paidInvoices": self.paid_invoices,
        }


def _ms(d: date, second_of_day: int) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000 + second_of_day * 1000


def seed(
    state: SandboxState, *, seed: int, companies: int = 1, customers: int = 50, items: int = 100,
    invoices_per_year: int = 1000, years: int = 2, orders: int = 20, credit_memos: int = 10,
    lines_per_invoice: int = 5, return_orders: int = 2, draft_invoices: int = 5,
    payment_method_code: str = "PAYWEAVE", payweave_share: float = 0.3, today: date | None = None,
) -> SeedResult:
    """Fill ``state`` with ``companies`` companies of deterministic data (see module doc)."""
    if lines_per_invoice < 1 or customers < 1 or items < 1:
        raise ValueError("seed needs at least one customer, one item and one line per invoice")
    rng = random.Random(seed)

    def next_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    result = SeedResult()
    with state.lock:
        previous = state.new_id
        state.new_id = next_id
        try:
            today = today or state.today()
            now_ms = state.now_ms()
            for n in range(companies):
                name = "CRONUS USA, Inc." if n == 0 else f"CRONUS {n + 1}"
                company = state.add_company(name, id=next_id())
                result.companies.append(company.id)
                _seed_company(state, company, rng, next_id, result, today=today, now_ms=now_ms, customers=customers,
                              items=items, invoices=invoices_per_year * years, years=years, orders=orders,
                              credit_memos=credit_memos, lines_per_invoice=lines_per_invoice,
                              return_orders=return_orders, draft_invoices=draft_invoices,
                              payment_method_code=payment_method_code, payweave_share=payweave_share)
        finally:
            state.new_id = previous
    return result


def _seed_company(state: SandboxState, company: Company, rng: random.Random, next_id: Any, result: SeedResult, *,
                  today: date, now_ms: int, customers: int, items: int, invoices: int, years: int, orders: int,
                  credit_memos: int, lines_per_invoice: int, return_orders: int, draft_invoices: int,
                  payment_method_code: str, payweave_share: float) -> None:
    start = today - timedelta(days=365 * years)
    span_days = max((today - start).days, 1)
    addresses = [(f"{rng.randint(1, 999)} Main Street", "", city, st, country, postcode)
                 for city, st, country, postcode in _CITIES]

    # customers: created at the start of the history
    cust_list: list[Customer] = []
    for i in range(customers):
        c = Customer(next_id(), _ms(start, rng.randrange(_SECONDS_PER_DAY)), f"C{10000 + i * 10:05d}",
                     f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_SUFFIX)}")
        c.address = rng.choice(addresses)
        c.email = f"ap{i}@{c.name.split()[0].lower().replace(chr(39), '')}.example"
        c.phone = f"+1 555 {rng.randint(1000000, 9999999)}"
        c.currency = "EUR" if rng.random() < 0.1 else ""
        c.payment_method_code = payment_method_code if rng.random() < payweave_share else ""
        c.credit_limit = Decimal(rng.choice((0, 5000, 10000, 50000)))
        cust_list.append(c)
    company.series["C"] = 10000 + customers * 10
    company.tables["customers"].bulk_add(cust_list)

    item_list: list[Item] = []
    for i in range(items):
        price = Decimal(rng.randint(500, 200_000)).scaleb(-2)
        it = Item(next_id(), _ms(start, rng.randrange(_SECONDS_PER_DAY)), f"{1000 + i}",
                  f"{rng.choice(_ITEM_ADJ)} {rng.choice(_ITEM_NOUN)}", price, rng.choice(_TAX_RATES))
        it.unit_cost = round_amount(price * Decimal("0.6"), Decimal("0.01"))
        it.inventory = Decimal(rng.randint(0, 500))
        item_list.append(it)
    company.tables["items"].bulk_add(item_list)
    shipping = company.resources["SHIPPING"]

    def make_lines(doc: SalesDoc, count: int) -> None:
        lines = doc.lines
        for k in range(count):
            seq = _SEQS[k] if k < len(_SEQS) else (k + 1) * 10000
            if k == count - 1 and count > 2 and rng.random() < 0.15:
                lines.append(Line(next_id(), seq, "Resource", shipping, shipping.number, shipping.name, _QTYS[1],
                                  shipping.unit_price, ZERO, shipping.tax_percent, shipping.uom))
                continue
            it = item_list[rng.randrange(len(item_list))]
            disc = _DISCOUNTS[rng.randrange(3)] if rng.random() < 0.1 else ZERO
            lines.append(Line(next_id(), seq, "Item", it, it.number, it.name, _QTYS[rng.randint(1, 10)],
                              it.unit_price, disc, it.tax_percent, it.uom))

    def line_count() -> int:
        return max(1, min(2 * lines_per_invoice - 1, int(rng.triangular(1, 2 * lines_per_invoice - 1, lines_per_invoice) + 0.5)))

    # posted invoices, numbered in date order
    days = sorted(rng.randrange(span_days + 1) for _ in range(invoices))
    inv_series = KIND_SERIES["invoice"][1] or "PS-INV"
    posted: list[SalesDoc] = []
    n_lines = 0
    for k, day in enumerate(days):
        cust = cust_list[rng.randrange(len(cust_list))]
        doc_date = start + timedelta(days=day)
        created = _ms(doc_date, rng.randrange(8 * 3600, 18 * 3600))
        doc = SalesDoc(next_id(), created, "invoice", f"{inv_series}{k + 1:06d}", cust)
        doc.posted = True
        doc.release = "Released"
        doc.document_date = doc.posting_date = doc_date
        doc.due_date = doc_date + timedelta(days=30)
        doc.external_number = f"PO-{rng.randint(10000, 99999)}" if rng.random() < 0.3 else ""
        make_lines(doc, line_count())
        n_lines += len(doc.lines)
        documents.recompute(doc, company.precision)
        precision = documents.doc_precision(doc, company.precision)
        age = (today - doc.due_date).days
        roll = rng.random()
        if age > 60:
            paid_share = ZERO if roll < 0.03 else (Decimal("0.5") if roll < 0.05 else Decimal(1))
        elif age > 0:
            paid_share = ZERO if roll < 0.4 else (Decimal("0.5") if roll < 0.5 else Decimal(1))
        else:
            paid_share = ZERO if roll < 0.6 else (Decimal("0.3") if roll < 0.7 else Decimal(1))
        paid = round_amount(doc.total_incl * paid_share, precision)
        doc.remaining = ZERO if paid == doc.total_incl else doc.total_incl - paid
        if paid:
            paid_day = min(doc_date + timedelta(days=rng.randint(1, 45)), today)
            doc.lm = min(max(created, _ms(paid_day, rng.randrange(_SECONDS_PER_DAY))), now_ms)
        else:
            doc.lm = min(created, now_ms)
        if doc.remaining:
            result.open_invoices += 1
        else:
            result.paid_invoices += 1
        posted.append(doc)
    company.series[inv_series] = invoices

    # credit memos applied to invoices that are still open
    cr_series = KIND_SERIES["creditMemo"][1] or "PS-CR"
    open_invoices = [d for d in posted if d.remaining > 0]
    credits: list[SalesDoc] = []
    sales = company.sales_account
    for k in range(min(credit_memos, len(open_invoices))):
        inv = open_invoices[rng.randrange(len(open_invoices))]
        if inv.remaining <= 0:
            continue
        precision = documents.doc_precision(inv, company.precision)
        amount = min(round_amount(inv.total_incl * Decimal(rng.randint(10, 30)) / 100, precision), inv.remaining)
        doc_date = min(inv.document_date + timedelta(days=rng.randint(1, 20)), today)  # type: ignore[operator]
        credit = SalesDoc(next_id(), min(_ms(doc_date, rng.randrange(_SECONDS_PER_DAY)), now_ms), "creditMemo",
                          f"{cr_series}{k + 1:06d}", inv.customer)
        credit.posted = True
        credit.release = "Released"
        credit.currency = inv.currency
        credit.document_date = credit.posting_date = doc_date
        credit.due_date = doc_date
        credit.applies_to_id, credit.applies_to_number = inv.id, inv.number
        credit.lines.append(Line(next_id(), 10000, "G/L Account", sales, sales.number if sales else "",
                                 "Price reduction", _QTYS[1], amount, ZERO, ZERO))
        documents.recompute(credit, company.precision)
        credit.remaining = ZERO
        inv.remaining -= credit.total_incl
        inv.lm = max(inv.lm, credit.lm)
        credits.append(credit)
        if inv.remaining == 0:
            result.open_invoices -= 1
            result.paid_invoices += 1
    company.series[cr_series] = len(credits)

    for doc in posted:
        doc.bill_to.balance += doc.remaining

    # unposted documents: drafts, orders, return orders (recent, some released)
    def unposted(kind: str, count: int) -> list[SalesDoc]:
        series = KIND_SERIES[kind][0]
        out = []
        for k in range(count):
            cust = cust_list[rng.randrange(len(cust_list))]
            doc_date = today - timedelta(days=rng.randint(0, 14))
            doc = SalesDoc(next_id(), min(_ms(doc_date, rng.randrange(_SECONDS_PER_DAY)), now_ms), kind,
                           f"{series}{k + 1:06d}", cust)
            doc.document_date = doc.posting_date = doc_date
            doc.due_date = doc_date + timedelta(days=30)
            if kind == "order" and rng.random() < 0.5:
                doc.payment_method_code = payment_method_code
            make_lines(doc, line_count())
            if kind == "returnOrder" and posted:
                inv = posted[rng.randrange(len(posted))]
                doc.customer = doc.bill_to = inv.customer
                doc.applies_to_id, doc.applies_to_number = inv.id, inv.number
                doc.lines = doc.lines[:1]
            if kind == "order" and rng.random() < 0.5:
                doc.release = "Released"
            documents.recompute(doc, company.precision)
            doc.remaining = doc.total_incl
            out.append(doc)
        company.series[series] = count
        return out

    drafts = unposted("invoice", draft_invoices)
    order_docs = unposted("order", orders)
    returns = unposted("returnOrder", return_orders)
    company.tables["invoices"].bulk_add([*posted, *drafts])
    company.tables["creditMemos"].bulk_add(credits)
    company.tables["orders"].bulk_add(order_docs)
    company.tables["returnOrders"].bulk_add(returns)
    # the companion log starts complete: one Created (and Released) entry per open document, as
    # the extension writes at install for documents that already exist
    for doc in sorted([*drafts, *order_docs, *returns], key=lambda d: (d.lm, d.id)):
        company.events.append(DocEvent(len(company.events) + 1, next_id(), "Created", doc, doc.lm,
                                       doc.currency or company.lcy))
        if doc.release == "Released":
            company.events.append(DocEvent(len(company.events) + 1, next_id(), "Released", doc, doc.lm,
                                           doc.currency or company.lcy))

    result.customers += customers
    result.items += items
    result.invoices += len(posted)
    result.draft_invoices += len(drafts)
    result.invoice_lines += n_lines
    result.orders += len(order_docs)
    result.return_orders += len(returns)
    result.credit_memos += len(credits)


__all__ = ["seed", "SeedResult", "LineSpec"]

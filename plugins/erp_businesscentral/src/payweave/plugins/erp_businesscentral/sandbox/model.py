"""In-memory records of the BC sandbox.

Memory matters (a bench seeds 100,000 invoices with 500,000 lines), so records are
``__slots__`` classes, lines keep only their inputs (quantity, price, discount %, tax %) and
derive amounts on read, and strings shared by many records (names, addresses as one tuple,
captions) are shared references. Every table keeps an index sorted by
``(lastModified ms, id)``; a list page is a bisect plus a slice, never a sort.
"""
from __future__ import annotations

import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
ZERO = Decimal(0)
HUNDRED = Decimal(100)

# Address tuple layout: (line1, line2, city, state, country, postCode)
EMPTY_ADDRESS: tuple[str, str, str, str, str, str] = ("", "", "", "", "", "")


def new_guid() -> str:
    return str(uuid.uuid4())


def fmt_ms(ms: int) -> str:
    """Epoch milliseconds -> BC datetime text ``2020-08-21T00:25:58.337Z``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def round_amount(value: Decimal, precision: Decimal) -> Decimal:
    """BC rounds amounts half away from zero to the currency's Amount Rounding Precision."""
    return value.quantize(precision, rounding=ROUND_HALF_UP)


class Record:
    """Base of every stored entity: a GUID, a modification time (epoch ms) and a version that
    feeds the ETag."""

    __slots__ = ("id", "lm", "ver")

    def __init__(self, id: str, lm: int) -> None:
        self.id = id
        self.lm = lm
        self.ver = 1


class Table:
    """Records of one entity kind in one company: ``by_id`` plus a sorted ``(lm, id)`` index."""

    __slots__ = ("by_id", "keys")

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}
        self.keys: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, id: str) -> Any:
        return self.by_id.get(id)

    def add(self, rec: Record) -> None:
        if rec.id in self.by_id:
            raise KeyError(f"duplicate id {rec.id}")
        self.by_id[rec.id] = rec
        insort(self.keys, (rec.lm, rec.id))

    def bulk_add(self, recs: list[Record]) -> None:
        """Add many records, then sort the index once (the seed's path)."""
        for rec in recs:
            if rec.id in self.by_id:
                raise KeyError(f"duplicate id {rec.id}")
            self.by_id[rec.id] = rec
            self.keys.append((rec.lm, rec.id))
        self.keys.sort()

    def _drop_key(self, rec: Record) -> None:
        key = (rec.lm, rec.id)
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
        else:  # pragma: no cover - an index out of sync is a sandbox bug; fail loudly
            raise RuntimeError(f"index lost {key}")

    def touch(self, rec: Record, lm: int) -> None:
        """Record a modification at ``lm`` (never moves time backwards for this record)."""
        self._drop_key(rec)
        rec.lm = max(lm, rec.lm)
        rec.ver += 1
        insort(self.keys, (rec.lm, rec.id))

    def remove(self, rec: Record) -> None:
        self._drop_key(rec)
        del self.by_id[rec.id]

    def scan(self, after: tuple[int, str] | None = None, lo_ms: int | None = None,
             hi_ms: int | None = None) -> Iterator[tuple[tuple[int, str], Any]]:
        """Yield ``(key, record)`` in index order, strictly after ``after``, with
        ``lo_ms <= lm <= hi_ms`` when given. Stops at ``hi_ms`` without scanning further."""
        keys = self.keys
        start = 0
        if after is not None:
            start = bisect_right(keys, after)
        if lo_ms is not None:
            start = max(start, bisect_left(keys, (lo_ms, "")))
        by_id = self.by_id
        for i in range(start, len(keys)):
            key = keys[i]
            if hi_ms is not None and key[0] > hi_ms:
                return
            yield key, by_id[key[1]]

    def scan_desc(self, before: tuple[int, str] | None = None, lo_ms: int | None = None,
                  hi_ms: int | None = None) -> Iterator[tuple[tuple[int, str], Any]]:
        """Yield ``(key, record)`` in reverse index order (newest change first), strictly before
        ``before``, with ``lo_ms <= lm <= hi_ms`` when given. Stops at ``lo_ms``."""
        keys = self.keys
        end = len(keys)
        if before is not None:
            end = bisect_left(keys, before)
        if hi_ms is not None:
            end = min(end, bisect_left(keys, (hi_ms + 1, "")))
        by_id = self.by_id
        for i in range(end - 1, -1, -1):
            key = keys[i]
            if lo_ms is not None and key[0] < lo_ms:
                return
            yield key, by_id[key[1]]


class Company(Record):
    __slots__ = (
        "name", "display_name", "lcy", "precision", "tables", "series", "receivables_account",
        "sales_account", "tax_account", "payment_discount_account", "currency_ids", "resources",
        "cust_ledger", "next_gl_entry", "events",
    )

    #: entity kinds stored per company (the standard sets plus internals)
    KINDS = (
        "customers", "items", "accounts", "bankAccounts", "orders", "invoices", "creditMemos",
        "returnOrders", "journals", "generalLedgerEntries",
    )

    def __init__(self, id: str, lm: int, name: str, display_name: str, lcy: str, precision: Decimal) -> None:
        super().__init__(id, lm)
        self.name = name
        self.display_name = display_name
        self.lcy = lcy
        self.precision = precision
        self.tables: dict[str, Table] = {kind: Table() for kind in self.KINDS}
        self.series: dict[str, int] = {}
        self.receivables_account: Account | None = None
        self.sales_account: Account | None = None
        self.tax_account: Account | None = None
        self.payment_discount_account: Account | None = None
        self.currency_ids: dict[str, str] = {}
        self.resources: dict[str, Resource] = {}
        self.cust_ledger: list[CustLedgerEntry] = []
        self.next_gl_entry = 1
        self.events: list[DocEvent] = []

    def next_number(self, series: str, width: int = 6) -> str:
        n = self.series.get(series, 0) + 1
        self.series[series] = n
        return f"{series}{n:0{width}d}"

    def currency_id(self, code: str) -> str:
        if not code or code == self.lcy:
            return BLANK_GUID
        cid = self.currency_ids.get(code)
        if cid is None:
            cid = str(uuid.uuid5(uuid.UUID(self.id), "currency:" + code))
            self.currency_ids[code] = cid
        return cid


class Customer(Record):
    __slots__ = (
        "number", "name", "type", "address", "phone", "email", "website", "salesperson",
        "credit_limit", "tax_liable", "tax_registration", "currency", "payment_terms_id",
        "shipment_method_id", "payment_method_id", "payment_method_code", "blocked", "balance",
    )

    def __init__(self, id: str, lm: int, number: str, name: str) -> None:
        super().__init__(id, lm)
        self.number = number
        self.name = name
        self.type = "Company"
        self.address = EMPTY_ADDRESS
        self.phone = ""
        self.email = ""
        self.website = ""
        self.salesperson = ""
        self.credit_limit = ZERO
        self.tax_liable = False
        self.tax_registration = ""
        self.currency = ""  # blank = local currency, as in BC
        self.payment_terms_id = BLANK_GUID
        self.shipment_method_id = BLANK_GUID
        self.payment_method_id = BLANK_GUID
        self.payment_method_code = ""
        self.blocked = " "
        self.balance = ZERO  # BC's Balance (LCY) FlowField, kept up to date on posting


class Item(Record):
    __slots__ = ("number", "name", "type", "unit_price", "unit_cost", "tax_percent", "uom", "blocked",
                 "inventory", "gtin")

    def __init__(self, id: str, lm: int, number: str, name: str, unit_price: Decimal, tax_percent: Decimal) -> None:
        super().__init__(id, lm)
        self.number = number
        self.name = name
        self.type = "Inventory"
        self.unit_price = unit_price
        self.unit_cost = ZERO
        self.tax_percent = tax_percent
        self.uom = "PCS"
        self.blocked = False
        self.inventory = ZERO
        self.gtin = ""


class Resource:
    """A resource (not exposed by API v2.0); the companion API shows its payweave subtype."""

    __slots__ = ("id", "number", "name", "unit_price", "tax_percent", "subtype", "uom")

    def __init__(self, id: str, number: str, name: str, unit_price: Decimal, tax_percent: Decimal, subtype: str) -> None:
        self.id = id
        self.number = number
        self.name = name
        self.unit_price = unit_price
        self.tax_percent = tax_percent
        self.subtype = subtype  # "None" | "Voucher" | "Shipping"
        self.uom = "HOUR" if subtype == "None" else "PCS"


class Account(Record):
    __slots__ = ("number", "name", "category", "sub_category", "account_type", "direct_posting",
                 "blocked", "net_change")

    def __init__(self, id: str, lm: int, number: str, name: str, category: str, sub_category: str = "") -> None:
        super().__init__(id, lm)
        self.number = number
        self.name = name
        self.category = category
        self.sub_category = sub_category
        self.account_type = "Posting"
        self.direct_posting = True
        self.blocked = False
        self.net_change = ZERO


class BankAccount(Record):
    __slots__ = ("number", "name", "bank_account_number", "iban", "currency", "blocked", "gl_account", "balance")

    def __init__(self, id: str, lm: int, number: str, name: str, gl_account: Account) -> None:
        super().__init__(id, lm)
        self.number = number
        self.name = name
        self.bank_account_number = ""
        self.iban = ""
        self.currency = ""
        self.blocked = False
        self.gl_account = gl_account
        self.balance = ZERO


class Line:
    """A sales document line. Amounts are derived (see :mod:`.documents`)."""

    __slots__ = ("id", "seq", "type", "ref", "number", "description", "quantity", "unit_price",
                 "discount_percent", "tax_percent", "uom", "alloc", "shipped", "invoiced", "ver")

    def __init__(self, id: str, seq: int, type: str, ref: Any, number: str, description: str,
                 quantity: Decimal, unit_price: Decimal, discount_percent: Decimal, tax_percent: Decimal,
                 uom: str = "") -> None:
        self.id = id
        self.seq = seq
        self.type = type  # "Item" | "Resource" | "G/L Account" | "Charge (Item)" | "Comment"
        self.ref = ref  # the Item / Resource / Account record, or None
        self.number = number
        self.description = description
        self.quantity = quantity
        self.unit_price = unit_price
        self.discount_percent = discount_percent
        self.tax_percent = tax_percent
        self.uom = uom
        self.alloc = ZERO  # invoice discount allocated to this line
        self.shipped = ZERO
        self.invoiced = ZERO
        self.ver = 1


class SalesDoc(Record):
    """Any sales document: kind is ``order`` | ``invoice`` | ``returnOrder`` | ``creditMemo``.

    ``posted`` applies to invoices and credit memos (a posted one keeps the draft's id, as
    API v2.0 does). ``release`` is the Sales Header status of an unposted document.
    """

    __slots__ = (
        "kind", "posted", "number", "customer", "bill_to", "name", "sell_address", "bill_address",
        "ship_name", "ship_contact", "ship_address", "document_date", "posting_date", "due_date",
        "currency", "prices_include_tax", "external_number", "your_reference", "payment_terms_id",
        "shipment_method_id", "salesperson", "payment_method_code", "release", "invoice_discount",
        "payment_discount_percent", "prepayment_percent", "combine_shipments", "order_id",
        "order_number", "applies_to_id", "applies_to_number", "lines", "total_excl", "total_tax",
        "total_incl", "remaining", "canceled", "corrective", "phone", "email", "partial_shipping",
        "requested_delivery_date", "dim1", "dim2",
    )

    def __init__(self, id: str, lm: int, kind: str, number: str, customer: Customer) -> None:
        super().__init__(id, lm)
        self.kind = kind
        self.posted = False
        self.number = number
        self.customer = customer
        self.bill_to = customer
        self.name = customer.name
        self.sell_address = customer.address
        self.bill_address = customer.address
        self.ship_name = customer.name
        self.ship_contact = ""
        self.ship_address = customer.address
        self.document_date: date | None = None
        self.posting_date: date | None = None
        self.due_date: date | None = None
        self.currency = customer.currency
        self.prices_include_tax = False
        self.external_number = ""
        self.your_reference = ""
        self.payment_terms_id = customer.payment_terms_id
        self.shipment_method_id = customer.shipment_method_id
        self.salesperson = customer.salesperson
        self.payment_method_code = customer.payment_method_code
        self.release = "Open"
        self.invoice_discount = ZERO
        self.payment_discount_percent = ZERO
        self.prepayment_percent = ZERO
        self.combine_shipments = False
        self.order_id = BLANK_GUID
        self.order_number = ""
        self.applies_to_id = BLANK_GUID
        self.applies_to_number = ""
        self.lines: list[Line] = []
        self.total_excl = ZERO
        self.total_tax = ZERO
        self.total_incl = ZERO
        self.remaining = ZERO
        self.canceled = False
        self.corrective = False
        self.phone = customer.phone
        self.email = customer.email
        self.partial_shipping = False
        self.requested_delivery_date: date | None = None
        self.dim1 = ""
        self.dim2 = ""


class Journal(Record):
    """A general journal batch (``kind`` general, template GENERAL) or a customer payment
    journal batch (``kind`` payments, template CASHRCPT)."""

    __slots__ = ("kind", "code", "display_name", "template", "bal_account", "lines", "next_line_no", "series",
                 "company")

    def __init__(self, id: str, lm: int, kind: str, code: str, display_name: str, company: Company) -> None:
        super().__init__(id, lm)
        self.company = company
        self.kind = kind
        self.code = code
        self.display_name = display_name
        self.template = "CASHRCPT" if kind == "payments" else "GENERAL"
        self.bal_account: Account | None = None
        self.lines: list[JournalLine] = []
        self.next_line_no = 10000
        self.series = "G" if kind == "general" else "PMT"


class JournalLine(Record):
    __slots__ = ("journal", "line_no", "account_type", "account", "posting_date", "document_number",
                 "external_document_number", "amount", "description", "comment", "tax_code",
                 "bal_type", "bal_account", "applies_to")

    def __init__(self, id: str, lm: int, journal: Journal, line_no: int) -> None:
        super().__init__(id, lm)
        self.journal = journal
        self.line_no = line_no
        self.account_type = "Customer" if journal.kind == "payments" else "G/L Account"
        self.account: Any = None
        self.posting_date: date | None = None
        self.document_number = ""
        self.external_document_number = ""
        self.amount = ZERO
        self.description = ""
        self.comment = ""
        self.tax_code = ""
        self.bal_type = "G/L Account"
        self.bal_account: Any = None
        self.applies_to: SalesDoc | None = None


class GLEntry(Record):
    __slots__ = ("entry_number", "posting_date", "document_number", "document_type", "account",
                 "description", "debit", "credit")

    def __init__(self, id: str, lm: int, entry_number: int, posting_date: date, document_number: str,
                 document_type: str, account: Account, description: str, debit: Decimal, credit: Decimal) -> None:
        super().__init__(id, lm)
        self.entry_number = entry_number
        self.posting_date = posting_date
        self.document_number = document_number
        self.document_type = document_type
        self.account = account
        self.description = description
        self.debit = debit
        self.credit = credit


class CustLedgerEntry:
    """A posted customer payment or credit applied in the sandbox (not exposed by API v2.0;
    the admin endpoints and tests read it to count what was really posted)."""

    __slots__ = ("document_type", "document_number", "customer_id", "amount", "applied_to_id",
                 "applied_amount", "posting_date", "source", "external_document_number")

    def __init__(self, document_type: str, document_number: str, customer_id: str, amount: Decimal,
                 applied_to_id: str, applied_amount: Decimal, posting_date: date, source: str,
                 external_document_number: str = "") -> None:
        self.document_type = document_type
        self.document_number = document_number
        self.customer_id = customer_id
        self.amount = amount
        self.applied_to_id = applied_to_id
        self.applied_amount = applied_amount
        self.posting_date = posting_date
        self.source = source  # "api" | "bc-user"
        self.external_document_number = external_document_number

    def as_json(self) -> dict[str, Any]:
        return {
            "documentType": self.document_type,
            "documentNumber": self.document_number,
            "externalDocumentNumber": self.external_document_number,
            "customerId": self.customer_id,
            "amount": self.amount,
            "appliedToInvoiceId": self.applied_to_id,
            "appliedAmount": self.applied_amount,
            "postingDate": self.posting_date.isoformat(),
            "source": self.source,
        }


class DocEvent:
    """One entry of the companion API's ``documentEvents`` change log."""

    __slots__ = ("seq", "id", "event_type", "doc_id", "doc_kind", "doc_number", "posted_id",
                 "posted_kind", "posted_number", "total_incl", "currency", "at_ms", "customer_id",
                 "customer_number", "customer_name", "payment_method_code")

    def __init__(self, seq: int, id: str, event_type: str, doc: SalesDoc, at_ms: int, currency: str,
                 posted: SalesDoc | None = None) -> None:
        self.seq = seq
        self.id = id
        self.event_type = event_type
        self.doc_id = doc.id
        self.doc_kind = doc.kind
        self.doc_number = doc.number
        self.posted_id = posted.id if posted is not None else BLANK_GUID
        self.posted_kind = posted.kind if posted is not None else ""
        self.posted_number = posted.number if posted is not None else ""
        self.total_incl = doc.total_incl
        self.currency = currency
        self.at_ms = at_ms
        self.customer_id = doc.customer.id
        self.customer_number = doc.customer.number
        self.customer_name = doc.name
        self.payment_method_code = doc.payment_method_code

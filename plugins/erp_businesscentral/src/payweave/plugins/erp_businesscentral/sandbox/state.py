"""The BC sandbox's state and its business rules (what BC does when a user or the API acts).

Every public method takes ``self.lock`` (re-entrant): the HTTP handlers, the admin endpoints,
the webhook thread and tests calling Python methods directly all see a consistent store.
Business-rule failures raise :class:`~.errors.BCApiError` with BC's code and message, whether
they were triggered over HTTP or from Python.
"""
from __future__ import annotations

import functools
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ..conventions import CUSTOMER_PAYMENT_AMOUNT_SIGN, STALE_ETAG_STATUS
from . import documents
from .clock import SandboxClock
from .errors import BCApiError, dialog
from .model import (
    BLANK_GUID,
    EMPTY_ADDRESS,
    ZERO,
    Account,
    BankAccount,
    Company,
    CustLedgerEntry,
    Customer,
    DocEvent,
    GLEntry,
    Item,
    Journal,
    JournalLine,
    Line,
    Record,
    Resource,
    SalesDoc,
    Table,
    new_guid,
)

F = TypeVar("F", bound=Callable[..., Any])

STANDARD_API = "v2.0"
COMPANION_API = "payweave/payments/v1.0"

#: Internal document kind -> (table name, standard API entity set or None)
KIND_TABLE = {"order": "orders", "invoice": "invoices", "creditMemo": "creditMemos", "returnOrder": "returnOrders"}
KIND_STANDARD_SET = {"order": "salesOrders", "invoice": "salesInvoices", "creditMemo": "salesCreditMemos",
                     "returnOrder": None}
KIND_CAPTION = {"order": "Order", "invoice": "Invoice", "creditMemo": "Credit Memo", "returnOrder": "Return Order"}
CAPTION_KIND = {v: k for k, v in KIND_CAPTION.items()}
#: number series: (unposted, posted)
KIND_SERIES = {"order": ("S-ORD", None), "invoice": ("S-INV", "PS-INV"), "creditMemo": ("S-CR", "PS-CR"),
               "returnOrder": ("S-RET", None)}

RELEASE_STATUSES = ("Open", "Released", "Pending Approval", "Pending Prepayment")
LINE_TYPES = ("Item", "Resource", "G/L Account", "Charge (Item)", "Comment", "Fixed Asset")
SUBTYPES = ("None", "Voucher", "Shipping")
ACCOUNT_TYPES = ("G/L Account", "Customer", "Vendor", "Bank Account", "Fixed Asset", "IC Partner", "Employee")
CODE_MAX = 20



def locked(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: SandboxState, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_code(value: str, field_name: str, max_len: int = CODE_MAX) -> str:
    if not isinstance(value, str):
        raise BCApiError(400, "BadRequest", f"Cannot convert a primitive value to the expected type 'Edm.String' ({field_name}).")
    if len(value) > max_len:
        raise BCApiError(
            400, "Application_StringExceededLength",
            f"The length of the string is {len(value)}, but it must be less than or equal to {max_len} "
            f"characters. Value: {value}",
        )
    return value.upper()


@dataclass
class ThrottleConfig:
    """Per-user limits (reference §7): a service principal counts as one user."""

    requests_per_window: int = 6000
    window_seconds: float = 300.0
    max_concurrent: int = 5
    #: extra requests beyond ``max_concurrent`` wait in a queue of this size; beyond it -> 429
    max_queued: int = 95
    #: a request still queued after this long gets 503 (BC: 8 minutes)
    queue_timeout_seconds: float = 480.0


@dataclass
class Fault:
    """An injected failure for the next ``count`` matching API requests.

    kind ``status``: answer ``status`` (503/429/502/...) with BC's error body, without applying.
    kind ``drop``: apply the request, then send the status line and headers and close the
    connection before the body (the client sees a broken response, like a timeout after BC
    committed). kind ``delay``: apply, then hold the response ``delay`` seconds.
    """

    kind: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    method: str | None = None
    path: str | None = None  # a regex searched in the request path

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and not re.search(self.path, path):
            return False
        return True


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, fault: Fault) -> Fault:
        if fault.kind not in ("status", "drop", "delay"):
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        if fault.count < 1:
            raise ValueError("a fault needs count >= 1")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.count for f in self._faults)


class RequestStats:
    """Requests the sandbox answered, per client and entity set (for tests and benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_key: Counter[tuple[str, str, str]] = Counter()
        self.statuses: Counter[int] = Counter()
        self.token_requests: Counter[str] = Counter()
        #: operations inside $batch requests (the $batch itself is one request in ``by_key``)
        self.batch_operations: Counter[tuple[str, str, str]] = Counter()

    def count(self, client: str, method: str, entity_set: str, status: int) -> None:
        with self._lock:
            self.by_key[(client, method, entity_set)] += 1
            self.statuses[status] += 1

    def count_operation(self, client: str, method: str, entity_set: str, status: int) -> None:
        with self._lock:
            self.batch_operations[(client, method, entity_set)] += 1

    def total(self, *, client: str | None = None, method: str | None = None, entity_set: str | None = None) -> int:
        with self._lock:
            return sum(
                n for (c, m, e), n in self.by_key.items()
                if (client is None or c == client) and (method is None or m == method)
                and (entity_set is None or e == entity_set)
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [{"client": c, "method": m, "entitySet": e, "count": n} for (c, m, e), n in sorted(self.by_key.items())],
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "tokenRequests": dict(self.token_requests),
                "batchOperations": [{"client": c, "method": m, "entitySet": e, "count": n}
                                    for (c, m, e), n in sorted(self.batch_operations.items())],
            }

    def reset(self) -> None:
        with self._lock:
            self.by_key.clear()
            self.statuses.clear()
            self.token_requests.clear()
            self.batch_operations.clear()


@dataclass
class Token:
    client_id: str
    tenant_id: str
    expires_at: float  # sandbox clock epoch seconds


@dataclass
class LineSpec:
    """Input for a new document line (admin API, seed, API deep insert)."""

    type: str = "Item"
    number: str = ""
    quantity: Decimal = Decimal(1)
    unit_price: Decimal | None = None
    discount_percent: Decimal = ZERO
    description: str | None = None
    tax_percent: Decimal | None = None


@dataclass
class SandboxState:
    tenant_id: str = field(default_factory=new_guid)
    environment: str = "production"
    clock: SandboxClock = field(default_factory=SandboxClock)
    token_lifetime_seconds: int = 3599
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    #: seconds of artificial latency on every API request (lets tests overlap requests)
    latency_seconds: float = 0.0
    stale_etag_status: int = STALE_ETAG_STATUS
    payment_sign: int = CUSTOMER_PAYMENT_AMOUNT_SIGN
    #: webhook batching window (BC: 30 s) and the ``collection`` threshold (BC: 1,000)
    webhook_delay_seconds: float = 30.0
    webhook_collection_threshold: int = 1000
    #: "thread": a background thread delivers when the window passes; "manual": only
    #: ``webhooks.flush()`` / ``POST /_sandbox/webhooks/flush`` deliver (deterministic tests)
    webhook_delivery: str = "thread"
    webhook_retry_seconds: float = 60.0
    tenant_domains: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        from .webhooks import WebhookManager

        self.lock = threading.RLock()
        self.companies: dict[str, Company] = {}
        self.apps: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self.faults = FaultPlan()
        self.stats = RequestStats()
        self.webhooks = WebhookManager(self)
        #: where record ids come from (the seed swaps in a seeded generator for determinism)
        self.new_id: Callable[[], str] = new_guid

    # ------------------------------------------------------------------ auth
    @locked
    def register_app(self, client_id: str | None = None, client_secret: str | None = None) -> tuple[str, str]:
        """Register an Entra application (client credentials) that may call the API."""
        client_id = client_id or str(uuid.uuid4())
        client_secret = client_secret or secrets.token_urlsafe(24)
        self.apps[client_id] = client_secret
        return client_id, client_secret

    def tenant_matches(self, tenant: str) -> bool:
        return tenant.lower() == self.tenant_id.lower() or tenant.lower() in {d.lower() for d in self.tenant_domains}

    @locked
    def issue_token(self, client_id: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Token(client_id, self.tenant_id, self.clock.time() + self.token_lifetime_seconds)
        now = self.clock.time()
        for key in [k for k, t in self.tokens.items() if t.expires_at < now - 3600]:
            del self.tokens[key]
        return token, self.token_lifetime_seconds

    @locked
    def check_token(self, token: str) -> Token | None:
        found = self.tokens.get(token)
        if found is None or found.expires_at <= self.clock.time():
            return None
        return found

    @locked
    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # ------------------------------------------------------------------ helpers
    def now_ms(self) -> int:
        return self.clock.now_ms()

    def today(self) -> date:
        return self.clock.today()

    def company(self, company_id: str) -> Company:
        found = self.companies.get(company_id.lower())
        if found is None:
            raise BCApiError(404, "Internal_CompanyNotFound", f"Cannot find the company with the id '{company_id}'.")
        return found

    def _touch(self, company: Company, table: str, rec: Record, change: str = "updated") -> None:
        now = self.now_ms()
        tbl = company.tables[table]
        if change == "created":
            rec.lm = max(rec.lm, now)
            tbl.add(rec)
        elif change == "deleted":
            tbl.remove(rec)
        else:
            tbl.touch(rec, now)
        self._notify(company, table, rec, change)

    def _notify(self, company: Company, table: str, rec: Record, change: str) -> None:
        lm = max(rec.lm, self.now_ms()) if change == "deleted" else rec.lm
        if table in KIND_TABLE.values():
            doc: SalesDoc = rec  # type: ignore[assignment]
            std = KIND_STANDARD_SET[doc.kind]
            if std:
                self.webhooks.record(STANDARD_API, company.id, std, rec.id, change, lm)
            self.webhooks.record(COMPANION_API, company.id, "salesDocuments", rec.id, change, lm)
        elif table == "journals":
            name = "customerPaymentJournals" if rec.kind == "payments" else "journals"  # type: ignore[attr-defined]
            self.webhooks.record(STANDARD_API, company.id, name, rec.id, change, lm)
        else:
            self.webhooks.record(STANDARD_API, company.id, table, rec.id, change, lm)

    def _event(self, company: Company, event_type: str, doc: SalesDoc, posted: SalesDoc | None = None) -> None:
        seq = len(company.events) + 1
        currency = doc.currency or company.lcy
        company.events.append(DocEvent(seq, self.new_id(), event_type, doc, self.now_ms(), currency, posted))

    # ------------------------------------------------------------------ master data
    @locked
    def add_company(self, name: str, *, display_name: str | None = None, lcy: str = "USD", id: str | None = None,
                    with_defaults: bool = True) -> Company:
        cid = (id or self.new_id()).lower()
        precision = documents.precision_for(lcy, Decimal("0.01"))
        company = Company(cid, self.now_ms(), name, display_name or name, lcy, precision)
        self.companies[cid] = company
        if with_defaults:
            self.setup_defaults(company)
        return company

    @locked
    def setup_defaults(self, company: Company) -> None:
        """A small chart of accounts, two bank accounts, resources with payweave subtypes and the
        default journal batches (what CRONUS-like companies have)."""
        acc = lambda number, name, category, sub="": self.add_account(company, number, name, category, sub)  # noqa: E731
        checking = acc("10100", "Checking account", "Assets", "Cash")
        savings = acc("10200", "Savings account", "Assets", "Cash")
        acc("10900", "Payments clearing (payweave)", "Assets", "Cash")
        company.receivables_account = acc("13100", "Accounts Receivable", "Assets", "Accounts Receivable")
        company.tax_account = acc("22500", "Sales Tax Payable", "Liabilities", "Current Liabilities")
        company.sales_account = acc("40100", "Sales, Retail", "Income", "Income, Product Sales")
        company.payment_discount_account = acc("40900", "Payment Discounts Granted", "Income", "Income, Product Sales")
        acc("60800", "Payment processing fees", "Expense", "Other Expenses")
        self.add_bank_account(company, "CHECKING", "Checking account", checking)
        self.add_bank_account(company, "SAVINGS", "Savings account", savings)
        self.add_resource(company, "SHIPPING", "Shipping charge", Decimal("9.90"), Decimal("0"), "Shipping")
        self.add_resource(company, "VOUCHER", "Voucher", Decimal("-10"), Decimal("0"), "Voucher")
        self.add_resource(company, "CONSULT", "Consulting hour", Decimal("120"), Decimal("0"), "None")
        self.add_journal(company, "general", "GENERAL", "General journal")
        self.add_journal(company, "payments", "GENERAL", "Cash receipts", bal_account=checking)

    @locked
    def add_account(self, company: Company, number: str, name: str, category: str, sub_category: str = "") -> Account:
        account = Account(self.new_id(), self.now_ms(), number, name, category, sub_category)
        self._touch(company, "accounts", account, "created")
        return account

    @locked
    def add_bank_account(self, company: Company, number: str, name: str, gl_account: Account) -> BankAccount:
        bank = BankAccount(self.new_id(), self.now_ms(), number, name, gl_account)
        self._touch(company, "bankAccounts", bank, "created")
        return bank

    @locked
    def add_resource(self, company: Company, number: str, name: str, unit_price: Decimal, tax_percent: Decimal,
                     subtype: str = "None") -> Resource:
        if subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {SUBTYPES}")
        res = Resource(self.new_id(), number, name, unit_price, tax_percent, subtype)
        company.resources[number] = res
        return res

    @locked
    def add_customer(self, company: Company, name: str, *, number: str | None = None, email: str = "",
                     address: tuple[str, str, str, str, str, str] = EMPTY_ADDRESS, currency: str = "",
                     payment_method_code: str = "", phone: str = "") -> Customer:
        cust = Customer(self.new_id(), self.now_ms(), number or company.next_number("C", 5), name)
        cust.email = email
        cust.address = address
        cust.currency = "" if currency == company.lcy else currency
        cust.payment_method_code = payment_method_code
        cust.phone = phone
        self._touch(company, "customers", cust, "created")
        return cust

    @locked
    def update_customer(self, company: Company, cust: Customer, **changes: Any) -> Customer:
        for key, value in changes.items():
            if not hasattr(cust, key) or key in ("id", "lm", "ver"):
                raise AttributeError(key)
            setattr(cust, key, value)
        self._touch(company, "customers", cust)
        return cust

    @locked
    def add_item(self, company: Company, number: str, name: str, unit_price: Decimal,
                 tax_percent: Decimal = Decimal(0)) -> Item:
        item = Item(self.new_id(), self.now_ms(), number, name, unit_price, tax_percent)
        self._touch(company, "items", item, "created")
        return item

    @locked
    def add_journal(self, company: Company, kind: str, code: str, display_name: str = "",
                    bal_account: Account | None = None) -> Journal:
        code = to_code(code, "code", 10)
        for j in company.tables["journals"].by_id.values():
            if j.kind == kind and j.code == code:
                template = "CASHRCPT" if kind == "payments" else "GENERAL"
                raise BCApiError(
                    400, "Internal_EntityWithSameKeyExists",
                    f"The record in table Gen. Journal Batch already exists. Identification fields and values: "
                    f"Journal Template Name='{template}',Name='{code}'",
                )
        journal = Journal(self.new_id(), self.now_ms(), kind, code, display_name or code, company)
        journal.bal_account = bal_account
        self._touch(company, "journals", journal, "created")
        return journal

    # ------------------------------------------------------------------ lookups
    def find_customer(self, company: Company, *, id: str | None = None, number: str | None = None) -> Customer | None:
        table = company.tables["customers"]
        if id:
            return table.get(id.lower())
        if number:
            for c in table.by_id.values():
                if c.number == number:
                    return c
        return None

    def find_by_number(self, company: Company, table: str, number: str) -> Any:
        for rec in company.tables[table].by_id.values():
            if getattr(rec, "number", None) == number:
                return rec
        return None

    def find_posted_invoice(self, company: Company, *, id: str | None = None, number: str | None = None) -> SalesDoc | None:
        invoices = company.tables["invoices"]
        if id:
            doc = invoices.get(id.lower())
        else:
            doc = next((d for d in invoices.by_id.values() if d.number == number and d.posted), None)
        return doc if doc is not None and doc.posted else None

    def find_document(self, company: Company, doc_id: str) -> SalesDoc | None:
        for table in KIND_TABLE.values():
            doc = company.tables[table].get(doc_id.lower())
            if doc is not None:
                return doc
        return None

    # ------------------------------------------------------------------ sales documents
    def _line_from_spec(self, company: Company, doc: SalesDoc, spec: LineSpec, seq: int) -> Line:
        if spec.type not in LINE_TYPES:
            raise BCApiError(400, "Application_EvaluateException",
                             f"'{spec.type}' is not an option. The existing options are: {','.join(LINE_TYPES)}")
        ref: Any = None
        price = spec.unit_price
        tax = spec.tax_percent
        description = spec.description
        uom = ""
        number = spec.number
        if spec.type == "Item":
            ref = self.find_by_number(company, "items", spec.number)
            if ref is None:
                raise dialog(f"The Item does not exist. Identification fields and values: No.='{spec.number}'")
            price = ref.unit_price if price is None else price
            tax = ref.tax_percent if tax is None else tax
            description = ref.name if description is None else description
            uom = ref.uom
        elif spec.type == "Resource":
            ref = company.resources.get(spec.number)
            if ref is None:
                raise dialog(f"The Resource does not exist. Identification fields and values: No.='{spec.number}'")
            price = ref.unit_price if price is None else price
            tax = ref.tax_percent if tax is None else tax
            description = ref.name if description is None else description
            uom = ref.uom
        elif spec.type in ("G/L Account", "Charge (Item)", "Fixed Asset"):
            if spec.type == "G/L Account":
                ref = self.find_by_number(company, "accounts", spec.number)
                if ref is None:
                    raise dialog(f"The G/L Account does not exist. Identification fields and values: No.='{spec.number}'")
                description = ref.name if description is None else description
        else:  # Comment
            number = ""
        qty = spec.quantity if spec.type != "Comment" else ZERO
        return Line(
            self.new_id(), seq, spec.type, ref, number, description or "", qty,
            price if price is not None and spec.type != "Comment" else ZERO,
            spec.discount_percent, tax if tax is not None else ZERO, uom,
        )

    @locked
    def create_document(
        self, company: Company, kind: str, customer: Customer, lines: Iterable[LineSpec] = (), *,
        id: str | None = None, number: str | None = None, document_date: date | None = None,
        posting_date: date | None = None, due_date: date | None = None, currency: str | None = None,
        payment_method_code: str | None = None, prices_include_tax: bool = False,
        invoice_discount: Decimal = ZERO, payment_discount_percent: Decimal = ZERO,
        prepayment_percent: Decimal = ZERO, combine_shipments: bool = False, external_number: str = "",
        applies_to: SalesDoc | None = None, release: bool = False, emit: bool = True,
        prepare: Callable[[SalesDoc], None] | None = None,
    ) -> SalesDoc:
        if kind not in KIND_TABLE:
            raise ValueError(f"unknown document kind {kind!r}")
        series = KIND_SERIES[kind][0]
        doc = SalesDoc((id or self.new_id()).lower(), self.now_ms(), kind, number or company.next_number(series), customer)
        today = self.today()
        doc.document_date = document_date or today
        doc.posting_date = posting_date or doc.document_date
        doc.due_date = due_date or (doc.document_date + timedelta(days=30))
        if currency is not None:
            doc.currency = "" if currency == company.lcy else currency
        if payment_method_code is not None:
            doc.payment_method_code = payment_method_code
        doc.prices_include_tax = prices_include_tax
        doc.invoice_discount = invoice_discount
        doc.payment_discount_percent = payment_discount_percent
        doc.prepayment_percent = prepayment_percent
        doc.combine_shipments = combine_shipments
        doc.external_number = external_number
        if applies_to is not None:
            self._set_applies_to(doc, applies_to)
        seq = 10000
        for spec in lines:
            doc.lines.append(self._line_from_spec(company, doc, spec, seq))
            seq += 10000
        if prepare is not None:
            prepare(doc)  # may raise: nothing is stored yet
        documents.recompute(doc, company.precision)
        doc.remaining = doc.total_incl
        self._touch(company, KIND_TABLE[kind], doc, "created")
        if emit:
            self._event(company, "Created", doc)
        if release:
            self.release(company, doc)
        return doc

    def _set_applies_to(self, doc: SalesDoc, invoice: SalesDoc) -> None:
        if doc.kind not in ("creditMemo", "returnOrder"):
            raise dialog("Only credit memos and return orders can be applied to an invoice.")
        if invoice.kind != "invoice" or not invoice.posted:
            raise dialog('The "invoiceId" should be the ID of a posted invoice.')
        doc.applies_to_id = invoice.id
        doc.applies_to_number = invoice.number

    def _require_unposted(self, doc: SalesDoc) -> None:
        if doc.posted:
            raise dialog(f"The {KIND_CAPTION[doc.kind].lower()} {doc.number} has been posted and can no longer be changed.")

    def _require_open(self, doc: SalesDoc) -> None:
        """BC: lines and most header fields can only change while the status is Open."""
        self._require_unposted(doc)
        if doc.release != "Open":
            raise BCApiError(
                400, "Application_FieldValidationException",
                f"Status must be equal to 'Open'  in Sales Header: Document Type={KIND_CAPTION[doc.kind]}, "
                f"No.={doc.number}. Current value is '{doc.release}'.",
            )

    def _changed(self, company: Company, doc: SalesDoc, *, event: str | None = "Modified") -> None:
        documents.recompute(doc, company.precision)
        if not doc.posted:
            doc.remaining = doc.total_incl
        self._touch(company, KIND_TABLE[doc.kind], doc)
        if event and not doc.posted:
            self._event(company, event, doc)

    @locked
    def add_line(self, company: Company, doc: SalesDoc, spec: LineSpec, *, sequence: int | None = None) -> Line:
        self._require_open(doc)
        seq = sequence or ((doc.lines[-1].seq + 10000) if doc.lines else 10000)
        if any(ln.seq == seq for ln in doc.lines):
            raise BCApiError(400, "Internal_EntityWithSameKeyExists", f"The record in table Sales Line already exists. "
                             f"Identification fields and values: Document Type='{KIND_CAPTION[doc.kind]}',"
                             f"Document No.='{doc.number}',Line No.='{seq}'")
        line = self._line_from_spec(company, doc, spec, seq)
        doc.lines.append(line)
        doc.lines.sort(key=lambda ln: ln.seq)
        self._changed(company, doc)
        return line

    @locked
    def update_line(self, company: Company, doc: SalesDoc, line: Line, **changes: Any) -> Line:
        self._require_open(doc)
        for key, value in changes.items():
            if key not in ("quantity", "unit_price", "discount_percent", "description", "tax_percent"):
                raise AttributeError(key)
            setattr(line, key, value)
        line.ver += 1
        self._changed(company, doc)
        return line

    @locked
    def delete_line(self, company: Company, doc: SalesDoc, line: Line) -> None:
        self._require_open(doc)
        doc.lines.remove(line)
        self._changed(company, doc)

    @locked
    def update_document(self, company: Company, doc: SalesDoc, **changes: Any) -> SalesDoc:
        """Change header fields as a BC user would. ``due_date`` may change on a posted invoice
        (BC users edit it on the customer ledger entry); everything else needs an unposted,
        open document."""
        only_due = set(changes) <= {"due_date"}
        if only_due and doc.posted:
            pass
        else:
            self._require_open(doc)
        for key, value in changes.items():
            if key == "customer":
                doc.customer = doc.bill_to = value
                doc.name = doc.ship_name = value.name
                doc.sell_address = doc.bill_address = doc.ship_address = value.address
                doc.currency = value.currency
                doc.payment_method_code = value.payment_method_code
                doc.phone, doc.email = value.phone, value.email
                continue
            if key not in SalesDoc.__slots__ or key in ("lines", "kind", "posted", "total_excl", "total_tax",
                                                         "total_incl", "remaining", "release", "number"):
                raise AttributeError(key)
            setattr(doc, key, value)
        self._changed(company, doc)
        return doc

    @locked
    def release(self, company: Company, doc: SalesDoc) -> SalesDoc:
        self._require_unposted(doc)
        if doc.release == "Released":
            return doc
        if not any(ln.type != "Comment" and ln.quantity for ln in doc.lines):
            raise dialog(f"There is nothing to release for the document of type {KIND_CAPTION[doc.kind]} with the number {doc.number}.")
        doc.release = "Released"
        self._changed(company, doc, event="Released")
        return doc

    @locked
    def reopen(self, company: Company, doc: SalesDoc) -> SalesDoc:
        self._require_unposted(doc)
        if doc.release == "Open":
            return doc
        doc.release = "Open"
        self._changed(company, doc, event="Reopened")
        return doc

    @locked
    def set_pending_approval(self, company: Company, doc: SalesDoc) -> SalesDoc:
        self._require_unposted(doc)
        doc.release = "Pending Approval"
        self._changed(company, doc, event="Modified")
        return doc

    @locked
    def partial_cancel(self, company: Company, doc: SalesDoc, quantities: dict[str, Decimal]) -> SalesDoc:
        """Reduce line quantities (0 removes the line) of an unposted order: the "partial
        cancellation" of DESIGN §4. BC reopens, edits and re-releases; the companion log shows
        one ``Partially Cancelled`` event with the new total."""
        self._require_unposted(doc)
        by_id = {ln.id: ln for ln in doc.lines}
        for line_id, qty in quantities.items():
            line = by_id.get(line_id.lower())
            if line is None:
                raise dialog(f"The line {line_id} does not exist on {doc.number}.")
            if qty < 0 or qty > line.quantity:
                raise dialog(f"The quantity of line {line.seq} can only be reduced (0..{line.quantity}).")
        for line_id, qty in quantities.items():
            line = by_id[line_id.lower()]
            if qty == 0:
                doc.lines.remove(line)
            else:
                line.quantity = qty
                line.ver += 1
        self._changed(company, doc, event="Partially Cancelled")
        return doc

    @locked
    def delete_document(self, company: Company, doc: SalesDoc) -> None:
        if doc.posted:
            raise dialog(f"You cannot delete the posted {KIND_CAPTION[doc.kind].lower()} {doc.number}.")
        self._event(company, "Deleted", doc)
        self._touch(company, KIND_TABLE[doc.kind], doc, "deleted")

    def _gl(self, company: Company, posting_date: date, document_number: str, document_type: str, account: Account,
            description: str, amount: Decimal, collect: list[GLEntry]) -> None:
        if amount == 0:
            return
        debit, credit = (amount, ZERO) if amount > 0 else (ZERO, -amount)
        entry = GLEntry(self.new_id(), self.now_ms(), company.next_gl_entry, posting_date, document_number, document_type,
                        account, description, debit, credit)
        company.next_gl_entry += 1
        account.net_change += amount
        collect.append(entry)

    def _commit_gl(self, company: Company, entries: list[GLEntry]) -> None:
        for entry in entries:
            self._touch(company, "generalLedgerEntries", entry, "created")

    def _post_sales_gl(self, company: Company, doc: SalesDoc, sign: int) -> None:
        """Receivables vs. sales and tax, in LCY (the sandbox books foreign currency 1:1)."""
        entries: list[GLEntry] = []
        doc_type = "Invoice" if sign > 0 else "Credit Memo"
        assert company.receivables_account and company.sales_account and company.tax_account
        self._gl(company, doc.posting_date or self.today(), doc.number, doc_type, company.receivables_account,
                 f"{doc_type} {doc.number}", sign * doc.total_incl, entries)
        self._gl(company, doc.posting_date or self.today(), doc.number, doc_type, company.sales_account,
                 f"{doc_type} {doc.number}", -sign * doc.total_excl, entries)
        self._gl(company, doc.posting_date or self.today(), doc.number, doc_type, company.tax_account,
                 f"{doc_type} {doc.number}", -sign * doc.total_tax, entries)
        self._commit_gl(company, entries)
        doc.bill_to.balance += sign * doc.total_incl

    def _check_postable(self, doc: SalesDoc) -> None:
        if doc.release == "Pending Approval":
            raise dialog(f"{KIND_CAPTION[doc.kind]} {doc.number} must be approved and released before you can perform this action.")
        if not any(ln.type != "Comment" and ln.quantity for ln in doc.lines):
            raise dialog("There is nothing to post.")

    def _copy_as(self, company: Company, src: SalesDoc, kind: str) -> SalesDoc:
        posted_series = KIND_SERIES[kind][1]
        assert posted_series
        doc = SalesDoc(self.new_id(), self.now_ms(), kind, company.next_number(posted_series), src.customer)
        for attr in ("bill_to", "name", "sell_address", "bill_address", "ship_name", "ship_contact", "ship_address",
                     "document_date", "due_date", "currency", "prices_include_tax", "external_number",
                     "your_reference", "payment_terms_id", "shipment_method_id", "salesperson",
                     "payment_method_code", "invoice_discount", "payment_discount_percent", "prepayment_percent",
                     "combine_shipments", "applies_to_id", "applies_to_number", "phone", "email", "dim1", "dim2"):
            setattr(doc, attr, getattr(src, attr))
        doc.posting_date = src.posting_date or self.today()
        doc.lines = [
            Line(self.new_id(), ln.seq, ln.type, ln.ref, ln.number, ln.description, ln.quantity, ln.unit_price,
                 ln.discount_percent, ln.tax_percent, ln.uom)
            for ln in src.lines
        ]
        doc.release = "Released"
        return doc

    @locked
    def post_document(self, company: Company, doc: SalesDoc) -> SalesDoc:
        """Post as BC does. An invoice or credit memo keeps its id (API v2.0 aggregate) and gets a
        posted number; an order becomes a new posted invoice with ``orderId`` (and is deleted
        after full invoicing); a return order becomes a new posted credit memo. Returns the
        posted document."""
        if doc.posted:
            raise dialog("The action can be applied to a draft invoice only." if doc.kind == "invoice"
                         else "The action can be applied to a draft credit memo only.")
        self._check_postable(doc)
        if doc.kind in ("invoice", "creditMemo"):
            source_number = doc.number
            doc.number = company.next_number(KIND_SERIES[doc.kind][1] or "")
            doc.posted = True
            doc.release = "Released"
            documents.recompute(doc, company.precision)
            doc.remaining = doc.total_incl
            posted = doc
            self._touch(company, KIND_TABLE[doc.kind], doc)
            ev_doc = SalesDoc(doc.id, doc.lm, doc.kind, source_number, doc.customer)
            ev_doc.total_incl = doc.total_incl
            ev_doc.currency = doc.currency
            ev_doc.name = doc.name
            ev_doc.payment_method_code = doc.payment_method_code
            self._event(company, "Posted", ev_doc, posted)
        else:
            target_kind = "invoice" if doc.kind == "order" else "creditMemo"
            posted = self._copy_as(company, doc, target_kind)
            if doc.kind == "order":
                posted.order_id = doc.id
                posted.order_number = doc.number
                for ln in doc.lines:
                    ln.shipped = ln.invoiced = ln.quantity
            posted.posted = True
            documents.recompute(posted, company.precision)
            posted.remaining = posted.total_incl
            self._event(company, "Posted", doc, posted)
            self._touch(company, KIND_TABLE[target_kind], posted, "created")
            self._touch(company, KIND_TABLE[doc.kind], doc, "deleted")
        self._post_sales_gl(company, posted, 1 if posted.kind == "invoice" else -1)
        if posted.kind == "creditMemo" and posted.applies_to_id != BLANK_GUID:
            invoice = company.tables["invoices"].get(posted.applies_to_id)
            if invoice is not None and invoice.posted and invoice.remaining > 0:
                self._apply_credit(company, posted, invoice, min(posted.remaining, invoice.remaining), source="bc-user")
        return posted

    def _apply_credit(self, company: Company, credit: SalesDoc, invoice: SalesDoc, amount: Decimal, source: str) -> None:
        invoice.remaining -= amount
        credit.remaining -= amount
        company.cust_ledger.append(CustLedgerEntry("Credit Memo", credit.number, credit.customer.id, -amount,
                                                   invoice.id, amount, credit.posting_date or self.today(), source))
        self._touch(company, "invoices", invoice)
        self._touch(company, "creditMemos", credit)

    @locked
    def cancel_invoice(self, company: Company, invoice: SalesDoc) -> SalesDoc:
        """``Microsoft.NAV.cancel``: a corrective credit memo for the full amount."""
        if not invoice.posted:
            raise dialog("The action can be applied to a posted invoice only.")
        if invoice.canceled:
            raise dialog(f"The invoice {invoice.number} has already been canceled.")
        if invoice.remaining != invoice.total_incl:
            raise dialog(f"You cannot cancel the posted sales invoice {invoice.number} because it is fully or partially paid.")
        credit = self._copy_as(company, invoice, "creditMemo")
        credit.applies_to_id, credit.applies_to_number = invoice.id, invoice.number
        credit.posted = True
        credit.corrective = True
        documents.recompute(credit, company.precision)
        credit.remaining = credit.total_incl
        self._touch(company, "creditMemos", credit, "created")
        self._post_sales_gl(company, credit, -1)
        self._apply_credit(company, credit, invoice, invoice.remaining, source="bc-user")
        invoice.canceled = True
        self._touch(company, "invoices", invoice)
        return credit

    @locked
    def user_payment(self, company: Company, invoice: SalesDoc, amount: Decimal, *, document_number: str | None = None,
                     posting_date: date | None = None, bank: BankAccount | None = None) -> CustLedgerEntry:
        """A BC user posts a cash receipt applied to ``invoice`` (``amount`` > 0 received)."""
        if not invoice.posted or invoice.kind != "invoice":
            raise dialog("Payments can only be applied to posted invoices.")
        if amount <= 0:
            raise dialog("The payment amount must be positive.")
        journal = next((j for j in company.tables["journals"].by_id.values() if j.kind == "payments"), None)
        if journal is None:
            raise dialog("There is no customer payment journal.")
        line = JournalLine(self.new_id(), self.now_ms(), journal, journal.next_line_no)
        line.account = invoice.bill_to
        line.posting_date = posting_date or self.today()
        line.document_number = to_code(document_number or company.next_number(journal.series), "documentNumber")
        line.amount = self.payment_sign * amount
        line.applies_to = invoice
        line.description = invoice.bill_to.name
        if bank is not None:
            line.bal_type, line.bal_account = "Bank Account", bank
        else:
            line.bal_account = journal.bal_account
            line.bal_type = "Bank Account" if isinstance(journal.bal_account, BankAccount) else "G/L Account"
        entries = self._post_lines(company, journal, [line], source="bc-user")
        return entries[-1]

    @locked
    def user_credit(self, company: Company, invoice: SalesDoc, amount: Decimal, description: str = "Credit") -> SalesDoc:
        """A BC user posts a credit memo of ``amount`` (incl. tax) applied to ``invoice``."""
        if not invoice.posted:
            raise dialog("Credits can only be applied to posted invoices.")
        credit = self.create_document(
            company, "creditMemo", invoice.customer,
            [LineSpec(type="G/L Account", number=company.sales_account.number if company.sales_account else "",
                      quantity=Decimal(1), unit_price=amount, tax_percent=ZERO, description=description)],
            currency=invoice.currency or company.lcy, applies_to=invoice, emit=True,
        )
        return self.post_document(company, credit)

    # ------------------------------------------------------------------ journals
    @locked
    def add_journal_line(self, company: Company, journal: Journal, line: JournalLine) -> JournalLine:
        line.line_no = journal.next_line_no
        journal.next_line_no += 10000
        if not line.document_number:
            line.document_number = company.next_number(journal.series, 5)
        if line.posting_date is None:
            line.posting_date = self.today()
        if line.bal_account is None and journal.bal_account is not None:
            line.bal_account = journal.bal_account
            line.bal_type = "Bank Account" if isinstance(journal.bal_account, BankAccount) else "G/L Account"
        journal.lines.append(line)
        line.lm = self.now_ms()
        return line

    @locked
    def touch_journal_line(self, line: JournalLine) -> None:
        line.lm = max(line.lm, self.now_ms())
        line.ver += 1

    @locked
    def delete_journal_line(self, journal: Journal, line: JournalLine) -> None:
        journal.lines.remove(line)

    def _gl_account_of(self, company: Company, account_type: str, account: Any) -> Account:
        if account_type == "G/L Account":
            return account
        if account_type == "Bank Account":
            return account.gl_account
        if account_type == "Customer":
            assert company.receivables_account
            return company.receivables_account
        raise dialog(f"The sandbox cannot post to account type {account_type}.")

    @locked
    def post_journal(self, company: Company, journal: Journal) -> list[CustLedgerEntry]:
        """``journals({id})/Microsoft.NAV.post``: post every line of the batch, or none."""
        if not journal.lines:
            raise dialog("There is nothing to post.")
        entries = self._post_lines(company, journal, list(journal.lines), source="api")
        journal.lines.clear()
        return entries

    def _post_lines(self, company: Company, journal: Journal, lines: list[JournalLine], source: str) -> list[CustLedgerEntry]:
        where = lambda ln: (f"Gen. Journal Line: Journal Template Name={journal.template}, "  # noqa: E731
                            f"Journal Batch Name={journal.code}, Line No.={ln.line_no}")
        balance: dict[tuple[str, date], Decimal] = {}
        remaining: dict[str, Decimal] = {}
        for ln in lines:
            if ln.account is None:
                raise BCApiError(400, "Application_FieldValidationException",
                                 f"Account No. must have a value in {where(ln)}. It cannot be zero or empty.")
            if not ln.document_number:
                raise BCApiError(400, "Application_FieldValidationException",
                                 f"Document No. must have a value in {where(ln)}. It cannot be zero or empty.")
            if ln.amount == 0:
                raise BCApiError(400, "Application_FieldValidationException",
                                 f"Amount must have a value in {where(ln)}. It cannot be zero or empty.")
            if journal.kind == "payments" or ln.applies_to is not None:
                wanted = self.payment_sign
                if (ln.amount > 0 and wanted < 0) or (ln.amount < 0 and wanted > 0):
                    raise dialog(f"Amount must be {'negative' if wanted < 0 else 'positive'} in {where(ln)}.")
                if ln.applies_to is not None:
                    inv = ln.applies_to
                    left = remaining.get(inv.id, inv.remaining)
                    if not inv.posted or inv.canceled or left <= 0 or inv.bill_to is not ln.account:
                        raise BCApiError(
                            400, "Application_DialogException",
                            f"There is no Cust. Ledger Entry within the filter.  Filters: Document No.: {inv.number}, "
                            f"Document Type: Invoice, Customer No.: {getattr(ln.account, 'number', '')}, Open: Yes",
                        )
                    remaining[inv.id] = left - min(abs(ln.amount), left)
            if ln.bal_account is None:
                key = (ln.document_number, ln.posting_date or self.today())
                balance[key] = balance.get(key, ZERO) + ln.amount
        for (doc_no, _), amount in balance.items():
            if amount != 0:
                raise dialog(f"Document No. {doc_no} is out of balance by {amount.quantize(company.precision)}. Please check that Posting Date, "
                             "Document Type, Document No. and Amount are correct for each line.")
        gl: list[GLEntry] = []
        ledger: list[CustLedgerEntry] = []
        for ln in lines:
            pdate = ln.posting_date or self.today()
            doc_type = "Payment" if ln.account_type == "Customer" else " "
            description = ln.description or (getattr(ln.account, "name", "") if ln.account is not None else "")
            self._gl(company, pdate, ln.document_number, doc_type, self._gl_account_of(company, ln.account_type, ln.account),
                     description, ln.amount, gl)
            if isinstance(ln.account, BankAccount):
                ln.account.balance += ln.amount
            if ln.bal_account is not None:
                self._gl(company, pdate, ln.document_number, doc_type,
                         self._gl_account_of(company, ln.bal_type, ln.bal_account), description, -ln.amount, gl)
                if isinstance(ln.bal_account, BankAccount):
                    ln.bal_account.balance -= ln.amount
            if ln.account_type == "Customer":
                if journal.kind == "payments" or ln.applies_to is not None:
                    ln.account.balance -= abs(ln.amount)
                else:
                    ln.account.balance += ln.amount
                applied = ZERO
                inv = ln.applies_to
                if inv is not None:
                    applied = min(abs(ln.amount), inv.remaining)
                    inv.remaining -= applied
                    self._touch(company, "invoices", inv)
                entry = CustLedgerEntry("Payment", ln.document_number, ln.account.id, ln.amount,
                                        inv.id if inv is not None else BLANK_GUID, applied, pdate, source,
                                        ln.external_document_number)
                company.cust_ledger.append(entry)
                ledger.append(entry)
        self._commit_gl(company, gl)
        return ledger

    # ------------------------------------------------------------------ reporting
    @locked
    def posted_payments(self, company: Company, *, invoice_id: str | None = None) -> list[CustLedgerEntry]:
        return [e for e in company.cust_ledger if e.document_type == "Payment"
                and (invoice_id is None or e.applied_to_id == invoice_id.lower())]

    @locked
    def customer_balance(self, company: Company, customer: Customer) -> Decimal:
        """Recompute what the customer owes from the documents (open invoices minus open
        credits minus unapplied payments); tests compare it with the maintained ``balance``."""
        total = ZERO
        for doc in company.tables["invoices"].by_id.values():
            if doc.posted and doc.bill_to is customer:
                total += doc.remaining
        for doc in company.tables["creditMemos"].by_id.values():
            if doc.posted and doc.bill_to is customer:
                total -= doc.remaining
        for e in company.cust_ledger:
            if e.document_type == "Payment" and e.customer_id == customer.id:
                total -= abs(e.amount) - e.applied_amount
        return total


__all__ = [
    "SandboxState", "ThrottleConfig", "Fault", "LineSpec", "Table", "STANDARD_API", "COMPANION_API",
    "KIND_CAPTION", "CAPTION_KIND", "KIND_TABLE",
]

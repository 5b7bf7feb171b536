"""Entity sets of the sandbox: API v2.0 (field names and enum captions per the reference) and the
payweave companion API (DESIGN §5a, described in docs/bc-companion-api.md).

An :class:`EntitySet` knows its properties (name, Edm type, getter), how to list (a paging
:class:`~.odata.Source`), find, create, update and delete records, its navigation properties
(nested sets usable in the path and in ``$expand``) and its bound actions.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from .. import bcjson
from ..conventions import UNPOSTED_STATUS_CAPTIONS
from . import documents, pdf
from .errors import BCApiError, bad_request, dialog, method_not_allowed, read_only
from .model import (
    BLANK_GUID,
    ZERO,
    Account,
    BankAccount,
    Company,
    Customer,
    DocEvent,
    GLEntry,
    Item,
    Journal,
    JournalLine,
    Line,
    SalesDoc,
    fmt_ms,
)
from .odata import FieldDef, ListSource, Source, TableSource, UnionSource, is_guid
from .state import (
    ACCOUNT_TYPES,
    KIND_CAPTION,
    KIND_TABLE,
    LineSpec,
    SandboxState,
    to_code,
)

BLANK_DATE = "0001-01-01"
SYSTEM_VERSION = "25.0.23364.0"


@dataclass
class Ctx:
    state: SandboxState
    api: str
    base: str  # absolute URL of the API root, e.g. http://h/v2.0/t/production/api/v2.0
    company: Company | None = None
    parent: Any = None
    path: str = ""  # relative path of the collection, for @odata.context / media links


# ---------------------------------------------------------------------- value conversion

def _out(type_: str) -> Callable[[Any], Any]:
    if type_ == "decimal":
        return bcjson.number
    if type_ == "date":
        return lambda v: v.isoformat() if v is not None else BLANK_DATE
    if type_ == "datetime":
        return fmt_ms
    return lambda v: v


def conv_error(edm: str, name: str) -> BCApiError:
    return BCApiError(400, "BadRequest",
                      f"Cannot convert a primitive value to the expected type '{edm}'. See the inner exception for more details. ({name})")


def as_text(value: Any, name: str, max_len: int = 100) -> str:
    if not isinstance(value, str):
        raise conv_error("Edm.String", name)
    if len(value) > max_len:
        raise BCApiError(400, "Application_StringExceededLength",
                         f"The length of the string is {len(value)}, but it must be less than or equal to {max_len} "
                         f"characters. Value: {value}")
    return value


def as_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise conv_error("Edm.Decimal", name)
    return Decimal(value)


def as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise conv_error("Edm.Boolean", name)
    return value


def as_date(value: Any, name: str) -> date | None:
    if not isinstance(value, str):
        raise conv_error("Edm.Date", name)
    if value == BLANK_DATE:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise conv_error("Edm.Date", name) from None


def as_guid(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_guid(value):
        raise BCApiError(400, "Application_InvalidGUID", f"Invalid GUID string format for '{name}': {value}")
    return value.lower()


def as_enum(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise BCApiError(400, "Application_EvaluateException",
                         f"'{value}' is not an option. The existing options are: {','.join(options)}")
    return value


def etag_of(ver: int, lm: int) -> str:
    return 'W/"' + base64.b64encode(f"'{ver};{lm};'".encode()).decode() + '"'


# ---------------------------------------------------------------------- entity set base

@dataclass
class Nav:
    target: EntitySet
    child_ctx: Callable[[Ctx, Any], Ctx]


class EntitySet:
    name = ""
    type_name = ""
    ops: frozenset[str] = frozenset({"list", "get"})
    actions: dict[str, Callable[[Ctx, Any], None]] = {}
    media: bool = False

    def __init__(self) -> None:
        self.navs: dict[str, Nav] = {}
        self._field_cache: dict[str, tuple[dict[str, FieldDef], list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]]]] = {}

    # -- properties
    def field_defs(self, ctx: Ctx) -> list[FieldDef]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fields(self, ctx: Ctx) -> dict[str, FieldDef]:
        return self._compiled(ctx)[0]

    def _compiled(self, ctx: Ctx) -> tuple[dict[str, FieldDef], list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]]]:
        key = ctx.company.id if ctx.company is not None else ""
        cached = self._field_cache.get(key)
        if cached is None:
            defs = self.field_defs(ctx)
            cached = ({fd.name: fd for fd in defs}, [(fd.name, fd.get, _out(fd.type)) for fd in defs])
            self._field_cache[key] = cached
        return cached

    def etag(self, rec: Any) -> str:
        return etag_of(rec.ver, rec.lm)

    def serialize(self, ctx: Ctx, rec: Any, select: set[str] | None = None,
                  expand: list[str] | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {"@odata.etag": self.etag(rec)}
        for name, get, out in self._compiled(ctx)[1]:
            if select is None or name in select:
                row[name] = out(get(rec))
        for nav_name in expand or ():
            nav = self.navs[nav_name]
            child = nav.child_ctx(ctx, rec)
            row[nav_name] = [nav.target.serialize(child, r) for _, r in nav.target.source(child).scan(None, None, None)]
        return row

    # -- reading
    def source(self, ctx: Ctx) -> Source:  # pragma: no cover - abstract
        raise NotImplementedError

    def find(self, ctx: Ctx, key: str) -> Any:
        for _, rec in self.source(ctx).scan(None, None, None):
            if rec.id == key:
                return rec
        return None

    def media_content(self, ctx: Ctx, rec: Any) -> tuple[bytes, str]:  # pragma: no cover
        raise BCApiError(404, "BadRequest_NotFound", "No media.")

    # -- writing (override what the set supports)
    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        raise method_not_allowed("POST")

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        raise method_not_allowed("PATCH")

    def delete(self, ctx: Ctx, rec: Any) -> None:
        raise method_not_allowed("DELETE")

    # -- helpers for writes
    def check_body(self, ctx: Ctx, body: dict[str, Any], writable: set[str], extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        known = self.fields(ctx)
        for key in body:
            if key.startswith("@odata"):
                continue
            if key in writable or key in extra:
                continue
            if key in known:
                raise read_only(key)
            raise BCApiError(
                400, "BadRequest",
                f"The property '{key}' does not exist on type 'Microsoft.NAV.{self.type_name}'. Make sure to only "
                "use property names that are defined by the type.",
            )


def company_of(ctx: Ctx) -> Company:
    assert ctx.company is not None
    return ctx.company


# ---------------------------------------------------------------------- companies

class CompaniesSet(EntitySet):
    name, type_name = "companies", "company"

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda c: c.id),
            FieldDef("systemVersion", "str", lambda c: SYSTEM_VERSION),
            FieldDef("timestamp", "int64", lambda c: c.lm * 10_000),
            FieldDef("name", "str", lambda c: c.name),
            FieldDef("displayName", "str", lambda c: c.display_name),
            FieldDef("businessProfileId", "str", lambda c: ""),
            FieldDef("systemCreatedAt", "datetime", lambda c: c.lm),
            FieldDef("systemCreatedBy", "guid", lambda c: BLANK_GUID),
            FieldDef("systemModifiedAt", "datetime", lambda c: c.lm),
            FieldDef("systemModifiedBy", "guid", lambda c: BLANK_GUID),
        ]

    def source(self, ctx: Ctx) -> Source:
        companies = list(ctx.state.companies.values())
        return ListSource(companies, key=lambda c: companies.index(c))

    def find(self, ctx: Ctx, key: str) -> Any:
        return ctx.state.companies.get(key)


# ---------------------------------------------------------------------- customers / items / accounts / banks

class CustomersSet(EntitySet):
    name, type_name = "customers", "customer"
    ops = frozenset({"list", "get", "create", "update", "delete"})
    BLOCKED = (" ", "Ship", "Invoice", "All")
    WRITABLE = {"number", "displayName", "type", "addressLine1", "addressLine2", "city", "state", "country",
                "postalCode", "phoneNumber", "email", "website", "salespersonCode", "creditLimit", "taxLiable",
                "taxRegistrationNumber", "currencyCode", "paymentTermsId", "shipmentMethodId", "paymentMethodId",
                "blocked"}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        company = company_of(ctx)
        lcy = company.lcy
        return [
            FieldDef("id", "guid", lambda c: c.id),
            FieldDef("number", "str", lambda c: c.number),
            FieldDef("displayName", "str", lambda c: c.name),
            FieldDef("type", "enum", lambda c: c.type),
            FieldDef("addressLine1", "str", lambda c: c.address[0]),
            FieldDef("addressLine2", "str", lambda c: c.address[1]),
            FieldDef("city", "str", lambda c: c.address[2]),
            FieldDef("state", "str", lambda c: c.address[3]),
            FieldDef("country", "str", lambda c: c.address[4]),
            FieldDef("postalCode", "str", lambda c: c.address[5]),
            FieldDef("phoneNumber", "str", lambda c: c.phone),
            FieldDef("email", "str", lambda c: c.email),
            FieldDef("website", "str", lambda c: c.website),
            FieldDef("salespersonCode", "str", lambda c: c.salesperson),
            FieldDef("balanceDue", "decimal", lambda c: c.balance),
            FieldDef("creditLimit", "decimal", lambda c: c.credit_limit),
            FieldDef("taxLiable", "bool", lambda c: c.tax_liable),
            FieldDef("taxAreaId", "guid", lambda c: BLANK_GUID),
            FieldDef("taxAreaDisplayName", "str", lambda c: ""),
            FieldDef("taxRegistrationNumber", "str", lambda c: c.tax_registration),
            FieldDef("currencyId", "guid", lambda c: company.currency_id(c.currency)),
            FieldDef("currencyCode", "str", lambda c: c.currency or lcy),
            FieldDef("paymentTermsId", "guid", lambda c: c.payment_terms_id),
            FieldDef("shipmentMethodId", "guid", lambda c: c.shipment_method_id),
            FieldDef("paymentMethodId", "guid", lambda c: c.payment_method_id),
            FieldDef("blocked", "enum", lambda c: c.blocked),
            FieldDef("lastModifiedDateTime", "datetime", lambda c: c.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(company_of(ctx).tables["customers"])

    def find(self, ctx: Ctx, key: str) -> Any:
        return company_of(ctx).tables["customers"].get(key)

    def _apply(self, ctx: Ctx, c: Customer, body: dict[str, Any]) -> None:
        company = company_of(ctx)
        addr = list(c.address)
        for key, value in body.items():
            if key.startswith("@odata"):
                continue
            if key == "number":
                number = to_code(value, key)
                other = ctx.state.find_customer(company, number=number)
                if other is not None and other is not c:
                    raise BCApiError(400, "Internal_EntityWithSameKeyExists",
                                     f"The record in table Customer already exists. Identification fields and values: No.='{number}'")
                c.number = number
            elif key == "displayName":
                c.name = as_text(value, key)
            elif key == "type":
                c.type = as_enum(value, key, ("Company", "Person"))
            elif key in ("addressLine1", "addressLine2", "city", "state", "country", "postalCode"):
                idx = ("addressLine1", "addressLine2", "city", "state", "country", "postalCode").index(key)
                addr[idx] = as_text(value, key)
            elif key == "phoneNumber":
                c.phone = as_text(value, key, 30)
            elif key == "email":
                c.email = as_text(value, key, 80)
            elif key == "website":
                c.website = as_text(value, key, 80)
            elif key == "salespersonCode":
                c.salesperson = to_code(value, key)
            elif key == "creditLimit":
                c.credit_limit = as_decimal(value, key)
            elif key == "taxLiable":
                c.tax_liable = as_bool(value, key)
            elif key == "taxRegistrationNumber":
                c.tax_registration = as_text(value, key, 20)
            elif key == "currencyCode":
                code = to_code(value, key, 10)
                c.currency = "" if code == company.lcy else code
            elif key in ("paymentTermsId", "shipmentMethodId", "paymentMethodId"):
                setattr(c, {"paymentTermsId": "payment_terms_id", "shipmentMethodId": "shipment_method_id",
                            "paymentMethodId": "payment_method_id"}[key], as_guid(value, key))
            elif key == "blocked":
                c.blocked = as_enum(value, key, self.BLOCKED)
        c.address = tuple(addr)  # type: ignore[assignment]

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        company = company_of(ctx)
        state = ctx.state
        with state.lock:
            cust = Customer(ctx.state.new_id(), state.now_ms(), "", "")
            self._apply(ctx, cust, body)
            if not cust.number:
                cust.number = company.next_number("C", 5)
            state._touch(company, "customers", cust, "created")
        return cust

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        with ctx.state.lock:
            self._apply(ctx, rec, body)
            ctx.state._touch(company_of(ctx), "customers", rec)
        return rec

    def delete(self, ctx: Ctx, rec: Any) -> None:
        company = company_of(ctx)
        with ctx.state.lock:
            for table in KIND_TABLE.values():
                for doc in company.tables[table].by_id.values():
                    if doc.customer is rec and (not doc.posted or doc.remaining):
                        raise dialog(f"You cannot delete Customer {rec.number} because there is at least one outstanding "
                                     f"Sales {KIND_CAPTION[doc.kind]} for this customer.")
            ctx.state._touch(company, "customers", rec, "deleted")


class ItemsSet(EntitySet):
    name, type_name = "items", "item"
    ops = frozenset({"list", "get", "create", "update", "delete"})
    WRITABLE = {"number", "displayName", "type", "unitPrice", "unitCost", "blocked", "gtin", "baseUnitOfMeasureCode"}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda i: i.id),
            FieldDef("number", "str", lambda i: i.number),
            FieldDef("displayName", "str", lambda i: i.name),
            FieldDef("displayName2", "str", lambda i: ""),
            FieldDef("type", "enum", lambda i: i.type),
            FieldDef("itemCategoryId", "guid", lambda i: BLANK_GUID),
            FieldDef("itemCategoryCode", "str", lambda i: ""),
            FieldDef("blocked", "bool", lambda i: i.blocked),
            FieldDef("gtin", "str", lambda i: i.gtin),
            FieldDef("inventory", "decimal", lambda i: i.inventory),
            FieldDef("unitPrice", "decimal", lambda i: i.unit_price),
            FieldDef("priceIncludesTax", "bool", lambda i: False),
            FieldDef("unitCost", "decimal", lambda i: i.unit_cost),
            FieldDef("taxGroupId", "guid", lambda i: BLANK_GUID),
            FieldDef("taxGroupCode", "str", lambda i: ""),
            FieldDef("baseUnitOfMeasureId", "guid", lambda i: BLANK_GUID),
            FieldDef("baseUnitOfMeasureCode", "str", lambda i: i.uom),
            FieldDef("lastModifiedDateTime", "datetime", lambda i: i.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(company_of(ctx).tables["items"])

    def find(self, ctx: Ctx, key: str) -> Any:
        return company_of(ctx).tables["items"].get(key)

    def _apply(self, item: Item, body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "number":
                item.number = to_code(value, key)
            elif key == "displayName":
                item.name = as_text(value, key)
            elif key == "type":
                item.type = as_enum(value, key, ("Inventory", "Service", "Non-Inventory"))
            elif key == "unitPrice":
                item.unit_price = as_decimal(value, key)
            elif key == "unitCost":
                item.unit_cost = as_decimal(value, key)
            elif key == "blocked":
                item.blocked = as_bool(value, key)
            elif key == "gtin":
                item.gtin = as_text(value, key, 14)
            elif key == "baseUnitOfMeasureCode":
                item.uom = to_code(value, key, 10)

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        company = company_of(ctx)
        with ctx.state.lock:
            item = Item(ctx.state.new_id(), ctx.state.now_ms(), "", "", ZERO, ZERO)
            self._apply(item, body)
            if not item.number:
                item.number = company.next_number("I", 5)
            ctx.state._touch(company, "items", item, "created")
        return item

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        with ctx.state.lock:
            self._apply(rec, body)
            ctx.state._touch(company_of(ctx), "items", rec)
        return rec

    def delete(self, ctx: Ctx, rec: Any) -> None:
        with ctx.state.lock:
            ctx.state._touch(company_of(ctx), "items", rec, "deleted")


class AccountsSet(EntitySet):
    name, type_name = "accounts", "account"

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda a: a.id),
            FieldDef("number", "str", lambda a: a.number),
            FieldDef("displayName", "str", lambda a: a.name),
            FieldDef("category", "enum", lambda a: a.category),
            FieldDef("subCategory", "str", lambda a: a.sub_category),
            FieldDef("blocked", "bool", lambda a: a.blocked),
            FieldDef("accountType", "enum", lambda a: a.account_type),
            FieldDef("directPosting", "bool", lambda a: a.direct_posting),
            FieldDef("netChange", "decimal", lambda a: a.net_change),
            FieldDef("consolidationTranslationMethod", "enum", lambda a: "Average Rate (Manual)"),
            FieldDef("consolidationDebitAccount", "str", lambda a: ""),
            FieldDef("consolidationCreditAccount", "str", lambda a: ""),
            FieldDef("excludeFromConsolidation", "bool", lambda a: False),
            FieldDef("lastModifiedDateTime", "datetime", lambda a: a.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(company_of(ctx).tables["accounts"])

    def find(self, ctx: Ctx, key: str) -> Any:
        return company_of(ctx).tables["accounts"].get(key)


class BankAccountsSet(EntitySet):
    name, type_name = "bankAccounts", "bankAccount"
    ops = frozenset({"list", "get", "create", "update", "delete"})
    WRITABLE = {"number", "displayName", "bankAccountNumber", "blocked", "currencyCode", "iban", "intercompanyEnabled"}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        company = company_of(ctx)
        return [
            FieldDef("id", "guid", lambda b: b.id),
            FieldDef("number", "str", lambda b: b.number),
            FieldDef("displayName", "str", lambda b: b.name),
            FieldDef("bankAccountNumber", "str", lambda b: b.bank_account_number),
            FieldDef("blocked", "bool", lambda b: b.blocked),
            FieldDef("currencyCode", "str", lambda b: b.currency or company.lcy),
            FieldDef("currencyId", "guid", lambda b: company.currency_id(b.currency)),
            FieldDef("iban", "str", lambda b: b.iban),
            FieldDef("intercompanyEnabled", "bool", lambda b: False),
            FieldDef("lastModifiedDateTime", "datetime", lambda b: b.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(company_of(ctx).tables["bankAccounts"])

    def find(self, ctx: Ctx, key: str) -> Any:
        return company_of(ctx).tables["bankAccounts"].get(key)

    def _apply(self, ctx: Ctx, b: BankAccount, body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "number":
                b.number = to_code(value, key)
            elif key == "displayName":
                b.name = as_text(value, key)
            elif key == "bankAccountNumber":
                b.bank_account_number = as_text(value, key, 30)
            elif key == "blocked":
                b.blocked = as_bool(value, key)
            elif key == "currencyCode":
                code = to_code(value, key, 10)
                b.currency = "" if code == company_of(ctx).lcy else code
            elif key == "iban":
                b.iban = as_text(value, key, 50)

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        company = company_of(ctx)
        with ctx.state.lock:
            gl = ctx.state.find_by_number(company, "accounts", "10100") or next(iter(company.tables["accounts"].by_id.values()))
            bank = BankAccount(ctx.state.new_id(), ctx.state.now_ms(), "", "", gl)
            self._apply(ctx, bank, body)
            if not bank.number:
                bank.number = company.next_number("B", 3)
            ctx.state._touch(company, "bankAccounts", bank, "created")
        return bank

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        with ctx.state.lock:
            self._apply(ctx, rec, body)
            ctx.state._touch(company_of(ctx), "bankAccounts", rec)
        return rec

    def delete(self, ctx: Ctx, rec: Any) -> None:
        with ctx.state.lock:
            ctx.state._touch(company_of(ctx), "bankAccounts", rec, "deleted")


# ---------------------------------------------------------------------- sales documents (API v2.0)

STD_LINE_TYPE = {"Item": "Item", "Resource": "Resource", "G/L Account": "Account", "Charge (Item)": "Charge",
                 "Comment": "Comment", "Fixed Asset": "Fixed Asset"}
STD_LINE_TYPE_IN = {v: k for k, v in STD_LINE_TYPE.items()}


def standard_status(d: SalesDoc) -> str:
    if not d.posted:
        return UNPOSTED_STATUS_CAPTIONS[d.release]
    if d.canceled:
        return "Canceled"
    if d.corrective:
        return "Corrective"
    return "Paid" if d.remaining == 0 else "Open"


def remaining_amount(d: SalesDoc) -> Decimal:
    if not d.posted:
        return d.total_incl
    return ZERO if d.canceled else d.remaining


class LineView(NamedTuple):
    """A document line with its parent and derived amounts (what line getters read)."""

    doc: SalesDoc
    line: Line
    amounts: documents.LineAmounts

    @property
    def id(self) -> str:
        return self.line.id


class DocLinesSource(ListSource):
    def __init__(self, doc: SalesDoc, company: Company) -> None:
        precision = documents.doc_precision(doc, company.precision)
        pit = doc.prices_include_tax
        views = [LineView(doc, ln, documents.line_amounts(ln, pit, precision)) for ln in doc.lines]
        super().__init__(views, key=lambda v: v.line.seq)


class SalesDocSet(EntitySet):
    """salesInvoices, salesOrders, salesCreditMemos."""

    ops = frozenset({"list", "get", "create", "update", "delete"})
    HEADER_WRITABLE = {
        "externalDocumentNumber", "postingDate", "dueDate", "customerPurchaseOrderReference", "customerId",
        "customerNumber", "billToCustomerId", "billToCustomerNumber", "shipToName", "shipToContact",
        "sellToAddressLine1", "sellToAddressLine2", "sellToCity", "sellToCountry", "sellToState", "sellToPostCode",
        "billToAddressLine1", "billToAddressLine2", "billToCity", "billToCountry", "billToState", "billToPostCode",
        "shipToAddressLine1", "shipToAddressLine2", "shipToCity", "shipToCountry", "shipToState", "shipToPostCode",
        "currencyId", "currencyCode", "paymentTermsId", "shipmentMethodId", "salesperson", "discountAmount",
        "phoneNumber", "email", "shortcutDimension1Code", "shortcutDimension2Code",
    }

    def __init__(self, kind: str, name: str, type_name: str, lines_name: str, date_field: str) -> None:
        super().__init__()
        self.kind = kind
        self.name = name
        self.type_name = type_name
        self.lines_name = lines_name
        self.date_field = date_field
        self.writable = set(self.HEADER_WRITABLE) | {date_field}
        if kind == "order":
            self.writable |= {"partialShipping", "requestedDeliveryDate"}
            self.writable.discard("dueDate")
        if kind == "creditMemo":
            self.writable |= {"invoiceId", "invoiceNumber", "customerReturnReasonId"}
        self.lines = SalesLineSet(self)
        self.pdf = PdfDocumentSet(self)
        self.navs = {
            lines_name: Nav(self.lines, lambda ctx, rec: Ctx(ctx.state, ctx.api, ctx.base, ctx.company, rec,
                                                             f"{ctx.path}({rec.id})/{lines_name}")),
            "pdfDocument": Nav(self.pdf, lambda ctx, rec: Ctx(ctx.state, ctx.api, ctx.base, ctx.company, rec,
                                                              f"{ctx.path}({rec.id})/pdfDocument")),
        }
        actions: dict[str, Callable[[Ctx, Any], None]] = {}
        if kind == "invoice":
            actions = {"post": self._post, "postAndSend": self._post, "cancel": self._cancel,
                       "cancelAndSend": self._cancel, "send": self._send}
        elif kind == "creditMemo":
            actions = {"post": self._post, "postAndSend": self._post, "send": self._send}
        elif kind == "order":
            actions = {"shipAndInvoice": self._ship_and_invoice}
        self.actions = actions

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        company = company_of(ctx)
        lcy = company.lcy
        k = self.kind
        f: list[FieldDef] = [
            FieldDef("id", "guid", lambda d: d.id),
            FieldDef("number", "str", lambda d: d.number),
            FieldDef("externalDocumentNumber", "str", lambda d: d.external_number),
            FieldDef(self.date_field, "date", lambda d: d.document_date),
            FieldDef("postingDate", "date", lambda d: d.posting_date),
        ]
        if k != "order":
            f.append(FieldDef("dueDate", "date", lambda d: d.due_date))
        if k == "invoice":
            f.append(FieldDef("customerPurchaseOrderReference", "str", lambda d: d.your_reference))
        f += [
            FieldDef("customerId", "guid", lambda d: d.customer.id),
            FieldDef("customerNumber", "str", lambda d: d.customer.number),
            FieldDef("customerName", "str", lambda d: d.name),
            FieldDef("billToName", "str", lambda d: d.bill_to.name),
            FieldDef("billToCustomerId", "guid", lambda d: d.bill_to.id),
            FieldDef("billToCustomerNumber", "str", lambda d: d.bill_to.number),
        ]
        if k != "creditMemo":
            f += [FieldDef("shipToName", "str", lambda d: d.ship_name),
                  FieldDef("shipToContact", "str", lambda d: d.ship_contact)]
        groups = [("sellTo", "sell_address"), ("billTo", "bill_address")]
        if k != "creditMemo":
            groups.append(("shipTo", "ship_address"))
        for prefix, attr in groups:
            for i, suffix in enumerate(("AddressLine1", "AddressLine2", "City", "State", "Country", "PostCode")):
                f.append(FieldDef(prefix + suffix, "str", (lambda a, j: lambda d: getattr(d, a)[j])(attr, i)))
        f += [
            FieldDef("currencyId", "guid", lambda d: company.currency_id(d.currency)),
            FieldDef("shortcutDimension1Code", "str", lambda d: d.dim1),
            FieldDef("shortcutDimension2Code", "str", lambda d: d.dim2),
            FieldDef("currencyCode", "str", lambda d: d.currency or lcy),
        ]
        if k == "invoice":
            f += [FieldDef("orderId", "guid", lambda d: d.order_id),
                  FieldDef("orderNumber", "str", lambda d: d.order_number)]
        f += [
            FieldDef("paymentTermsId", "guid", lambda d: d.payment_terms_id),
            FieldDef("shipmentMethodId", "guid", lambda d: d.shipment_method_id),
            FieldDef("salesperson", "str", lambda d: d.salesperson),
        ]
        if k == "order":
            f += [FieldDef("partialShipping", "bool", lambda d: d.partial_shipping),
                  FieldDef("requestedDeliveryDate", "date", lambda d: d.requested_delivery_date)]
        f.append(FieldDef("pricesIncludeTax", "bool", lambda d: d.prices_include_tax))
        if k == "invoice":
            f.append(FieldDef("remainingAmount", "decimal", remaining_amount))
        f += [
            FieldDef("discountAmount", "decimal", lambda d: d.invoice_discount),
            FieldDef("discountAppliedBeforeTax", "bool", lambda d: True),
            FieldDef("totalAmountExcludingTax", "decimal", lambda d: d.total_excl),
            FieldDef("totalTaxAmount", "decimal", lambda d: d.total_tax),
            FieldDef("totalAmountIncludingTax", "decimal", lambda d: d.total_incl),
        ]
        if k == "order":
            f.append(FieldDef("fullyShipped", "bool", lambda d: bool(d.lines) and all(
                ln.shipped >= ln.quantity for ln in d.lines if ln.type != "Comment")))
        f.append(FieldDef("status", "enum", standard_status))
        if k == "creditMemo":
            f += [FieldDef("invoiceId", "guid", lambda d: d.applies_to_id),
                  FieldDef("invoiceNumber", "str", lambda d: d.applies_to_number),
                  FieldDef("customerReturnReasonId", "guid", lambda d: BLANK_GUID)]
        f += [
            FieldDef("lastModifiedDateTime", "datetime", lambda d: d.lm),
            FieldDef("phoneNumber", "str", lambda d: d.phone),
            FieldDef("email", "str", lambda d: d.email),
        ]
        return f

    def table(self, ctx: Ctx) -> Any:
        return company_of(ctx).tables[KIND_TABLE[self.kind]]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(self.table(ctx))

    def find(self, ctx: Ctx, key: str) -> Any:
        return self.table(ctx).get(key)

    # -- writes
    def _resolve_customer(self, ctx: Ctx, body: dict[str, Any], id_key: str, number_key: str) -> Customer | None:
        company = company_of(ctx)
        by_id = by_number = None
        if body.get(id_key) not in (None, BLANK_GUID):
            by_id = ctx.state.find_customer(company, id=as_guid(body[id_key], id_key))
            if by_id is None:
                raise dialog(f'The "{id_key}" does not match to a Customer.')
        if body.get(number_key):
            by_number = ctx.state.find_customer(company, number=as_text(body[number_key], number_key, 20))
            if by_number is None:
                raise dialog(f'The "{number_key}" does not match to a Customer.')
        if by_id is not None and by_number is not None and by_id is not by_number:
            raise dialog("The customer values do not match to a specific Customer.")
        return by_id or by_number

    def _apply_header(self, ctx: Ctx, doc: SalesDoc, body: dict[str, Any]) -> None:
        company = company_of(ctx)
        bill_to = self._resolve_customer(ctx, body, "billToCustomerId", "billToCustomerNumber")
        if bill_to is not None:
            doc.bill_to = bill_to
            doc.bill_address = bill_to.address
        addr = {"sellTo": list(doc.sell_address), "billTo": list(doc.bill_address), "shipTo": list(doc.ship_address)}
        suffixes = ("AddressLine1", "AddressLine2", "City", "State", "Country", "PostCode")
        for key, value in body.items():
            if key.startswith("@odata") or key in ("customerId", "customerNumber", "billToCustomerId",
                                                   "billToCustomerNumber", self.lines_name):
                continue
            if key == self.date_field:
                doc.document_date = as_date(value, key)
            elif key == "postingDate":
                doc.posting_date = as_date(value, key)
            elif key == "dueDate":
                doc.due_date = as_date(value, key)
            elif key == "externalDocumentNumber":
                doc.external_number = as_text(value, key, 35)
            elif key == "customerPurchaseOrderReference":
                doc.your_reference = as_text(value, key, 35)
            elif key == "shipToName":
                doc.ship_name = as_text(value, key)
            elif key == "shipToContact":
                doc.ship_contact = as_text(value, key)
            elif key in ("currencyCode", "currencyId"):
                if key == "currencyCode":
                    code = to_code(value, key, 10)
                else:
                    gid = as_guid(value, key)
                    code = "" if gid == BLANK_GUID else next(
                        (c for c, i in company.currency_ids.items() if i == gid), None) or ""
                    if gid != BLANK_GUID and not code:
                        raise dialog('The "currencyId" does not match to a Currency.')
                doc.currency = "" if code == company.lcy else code
            elif key in ("paymentTermsId", "shipmentMethodId"):
                setattr(doc, "payment_terms_id" if key == "paymentTermsId" else "shipment_method_id", as_guid(value, key))
            elif key == "salesperson":
                doc.salesperson = to_code(value, key)
            elif key == "discountAmount":
                doc.invoice_discount = as_decimal(value, key)
            elif key == "phoneNumber":
                doc.phone = as_text(value, key, 30)
            elif key == "email":
                doc.email = as_text(value, key, 80)
            elif key == "shortcutDimension1Code":
                doc.dim1 = to_code(value, key)
            elif key == "shortcutDimension2Code":
                doc.dim2 = to_code(value, key)
            elif key == "partialShipping":
                doc.partial_shipping = as_bool(value, key)
            elif key == "requestedDeliveryDate":
                doc.requested_delivery_date = as_date(value, key)
            elif key in ("invoiceId", "invoiceNumber"):
                inv = ctx.state.find_posted_invoice(company, id=as_guid(value, key)) if key == "invoiceId" else \
                    ctx.state.find_posted_invoice(company, number=as_text(value, key, 20))
                if inv is None:
                    raise dialog(f'The "{key}" does not match to a posted Invoice.')
                doc.applies_to_id, doc.applies_to_number = inv.id, inv.number
            elif key == "customerReturnReasonId":
                as_guid(value, key)
            else:
                for prefix in addr:
                    if key.startswith(prefix) and key[len(prefix):] in suffixes:
                        addr[prefix][suffixes.index(key[len(prefix):])] = as_text(value, key)
        doc.sell_address = tuple(addr["sellTo"])  # type: ignore[assignment]
        doc.bill_address = tuple(addr["billTo"])  # type: ignore[assignment]
        doc.ship_address = tuple(addr["shipTo"])  # type: ignore[assignment]

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.writable, {self.lines_name})
        company = company_of(ctx)
        state = ctx.state
        with state.lock:
            customer = self._resolve_customer(ctx, body, "customerId", "customerNumber")
            if customer is None:
                raise dialog('A "customerNumber" or a "customerId" must be provided.')
            lines_body = body.get(self.lines_name) or []
            if not isinstance(lines_body, list):
                raise bad_request(f"'{self.lines_name}' must be an array.")
            specs = [self.lines.spec_from_body(ctx, lb) for lb in lines_body]
            return state.create_document(company, self.kind, customer, specs,
                                         prepare=lambda doc: self._apply_header(ctx, doc, body))

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.writable)
        company = company_of(ctx)
        state = ctx.state
        with state.lock:
            state._require_open(rec)
            customer = self._resolve_customer(ctx, body, "customerId", "customerNumber")
            if customer is not None and customer is not rec.customer:
                state.update_document(company, rec, customer=customer)
            self._apply_header(ctx, rec, body)
            state._changed(company, rec)
        return rec

    def delete(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.delete_document(company_of(ctx), rec)

    # -- actions
    def _post(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.post_document(company_of(ctx), rec)

    def _cancel(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.cancel_invoice(company_of(ctx), rec)

    def _send(self, ctx: Ctx, rec: Any) -> None:
        if not rec.email and not rec.customer.email:
            raise dialog("You must specify an email address for the recipient.")

    def _ship_and_invoice(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.post_document(company_of(ctx), rec)


class SalesLineSet(EntitySet):
    ops = frozenset({"list", "get", "create", "update", "delete"})
    WRITABLE = {"sequence", "itemId", "accountId", "lineType", "lineObjectNumber", "description", "quantity",
                "unitPrice", "discountPercent", "taxCode", "unitOfMeasureCode", "description2", "shipmentDate"}

    def __init__(self, header: SalesDocSet) -> None:
        super().__init__()
        self.header = header
        self.name = header.lines_name
        self.type_name = header.lines_name[:-1]

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        order = self.header.kind == "order"
        f = [
            FieldDef("id", "guid", lambda v: v.line.id),
            FieldDef("documentId", "guid", lambda v: v.doc.id),
            FieldDef("sequence", "int", lambda v: v.line.seq),
            FieldDef("itemId", "guid", lambda v: v.line.ref.id if v.line.type == "Item" else BLANK_GUID),
            FieldDef("accountId", "guid", lambda v: v.line.ref.id if v.line.type == "G/L Account" else BLANK_GUID),
            FieldDef("lineType", "enum", lambda v: STD_LINE_TYPE[v.line.type]),
            FieldDef("lineObjectNumber", "str", lambda v: v.line.number),
            FieldDef("description", "str", lambda v: v.line.description),
            FieldDef("description2", "str", lambda v: ""),
            FieldDef("unitOfMeasureId", "guid", lambda v: BLANK_GUID),
            FieldDef("unitOfMeasureCode", "str", lambda v: v.line.uom),
            FieldDef("quantity", "decimal", lambda v: v.line.quantity),
            FieldDef("unitPrice", "decimal", lambda v: v.line.unit_price),
            FieldDef("discountAmount", "decimal", lambda v: v.amounts.discount),
            FieldDef("discountPercent", "decimal", lambda v: v.line.discount_percent),
            FieldDef("discountAppliedBeforeTax", "bool", lambda v: True),
            FieldDef("amountExcludingTax", "decimal", lambda v: v.amounts.excl),
            FieldDef("taxCode", "str", lambda v: ""),
            FieldDef("taxPercent", "decimal", lambda v: v.line.tax_percent),
            FieldDef("totalTaxAmount", "decimal", lambda v: v.amounts.tax),
            FieldDef("amountIncludingTax", "decimal", lambda v: v.amounts.incl),
            FieldDef("invoiceDiscountAllocation", "decimal", lambda v: v.line.alloc),
            FieldDef("netAmount", "decimal", lambda v: v.amounts.net),
            FieldDef("netTaxAmount", "decimal", lambda v: v.amounts.net_tax),
            FieldDef("netAmountIncludingTax", "decimal", lambda v: v.amounts.net_incl),
            FieldDef("shipmentDate", "date", lambda v: v.doc.document_date),
            FieldDef("itemVariantId", "guid", lambda v: BLANK_GUID),
            FieldDef("locationId", "guid", lambda v: BLANK_GUID),
        ]
        if order:
            f += [
                FieldDef("shippedQuantity", "decimal", lambda v: v.line.shipped),
                FieldDef("invoicedQuantity", "decimal", lambda v: v.line.invoiced),
                FieldDef("invoiceQuantity", "decimal", lambda v: v.line.quantity - v.line.invoiced),
                FieldDef("shipQuantity", "decimal", lambda v: v.line.quantity - v.line.shipped),
            ]
        return f

    def etag(self, rec: Any) -> str:
        return etag_of(rec.line.ver, rec.line.seq)

    def source(self, ctx: Ctx) -> Source:
        return DocLinesSource(ctx.parent, company_of(ctx))

    def spec_from_body(self, ctx: Ctx, body: dict[str, Any]) -> LineSpec:
        if not isinstance(body, dict):
            raise bad_request("A line must be an object.")
        self.check_body(ctx, body, self.WRITABLE)
        company = company_of(ctx)
        line_type = STD_LINE_TYPE_IN[as_enum(body.get("lineType", "Item"), "lineType", tuple(STD_LINE_TYPE_IN))]
        number = ""
        if body.get("itemId"):
            item = company.tables["items"].get(as_guid(body["itemId"], "itemId"))
            if item is None:
                raise dialog('The "itemId" does not match to an Item.')
            line_type, number = "Item", item.number
        elif body.get("accountId"):
            acc = company.tables["accounts"].get(as_guid(body["accountId"], "accountId"))
            if acc is None:
                raise dialog('The "accountId" does not match to an Account.')
            line_type, number = "G/L Account", acc.number
        if body.get("lineObjectNumber"):
            number = to_code(body["lineObjectNumber"], "lineObjectNumber")
        spec = LineSpec(type=line_type, number=number)
        if "quantity" in body:
            spec.quantity = as_decimal(body["quantity"], "quantity")
        if "unitPrice" in body:
            spec.unit_price = as_decimal(body["unitPrice"], "unitPrice")
        if "discountPercent" in body:
            spec.discount_percent = as_decimal(body["discountPercent"], "discountPercent")
        if "description" in body:
            spec.description = as_text(body["description"], "description")
        return spec

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        spec = self.spec_from_body(ctx, body)
        seq = body.get("sequence")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise conv_error("Edm.Int32", "sequence")
        doc = ctx.parent
        line = ctx.state.add_line(company_of(ctx), doc, spec, sequence=seq)
        precision = documents.doc_precision(doc, company_of(ctx).precision)
        return LineView(doc, line, documents.line_amounts(line, doc.prices_include_tax, precision))

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, {"quantity", "unitPrice", "discountPercent", "description"})
        changes: dict[str, Any] = {}
        if "quantity" in body:
            changes["quantity"] = as_decimal(body["quantity"], "quantity")
        if "unitPrice" in body:
            changes["unit_price"] = as_decimal(body["unitPrice"], "unitPrice")
        if "discountPercent" in body:
            changes["discount_percent"] = as_decimal(body["discountPercent"], "discountPercent")
        if "description" in body:
            changes["description"] = as_text(body["description"], "description")
        doc = ctx.parent
        line = ctx.state.update_line(company_of(ctx), doc, rec.line, **changes)
        precision = documents.doc_precision(doc, company_of(ctx).precision)
        return LineView(doc, line, documents.line_amounts(line, doc.prices_include_tax, precision))

    def delete(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.delete_line(company_of(ctx), ctx.parent, rec.line)


PARENT_TYPE = {"invoice": "Sales Invoice", "order": "Sales Order", "creditMemo": "Sales Credit Memo"}


class PdfDocumentSet(EntitySet):
    name, type_name = "pdfDocument", "pdfDocument"
    media = True

    def __init__(self, header: SalesDocSet) -> None:
        super().__init__()
        self.header = header

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        parent_type = PARENT_TYPE[self.header.kind]
        base, path = ctx.base, ctx.path
        return [
            FieldDef("id", "guid", lambda d: d.id),
            FieldDef("parentId", "guid", lambda d: d.id),
            FieldDef("parentType", "enum", lambda d: parent_type),
            FieldDef("content@odata.mediaReadLink", "str", lambda d: f"{base}/{path}({d.id})/content"),
        ]

    def serialize(self, ctx: Ctx, rec: Any, select: set[str] | None = None, expand: list[str] | None = None) -> dict[str, Any]:
        # the media link depends on the request path, so don't reuse the per-company cache
        self._field_cache.clear()
        return super().serialize(ctx, rec, select, expand)

    def source(self, ctx: Ctx) -> Source:
        return ListSource([ctx.parent], key=lambda d: 0)

    def media_content(self, ctx: Ctx, rec: Any) -> tuple[bytes, str]:
        return pdf.render_document(company_of(ctx), rec, PARENT_TYPE[self.header.kind]), "application/pdf"


# ---------------------------------------------------------------------- journals and payments

def _account_for(ctx: Ctx, account_type: str, id_value: Any, number_value: Any, id_key: str, number_key: str) -> Any:
    company = company_of(ctx)
    table = {"G/L Account": "accounts", "Bank Account": "bankAccounts", "Customer": "customers"}.get(account_type)
    if table is None:
        raise dialog(f"The sandbox does not support account type {account_type}.")
    by_id = by_number = None
    if id_value not in (None, BLANK_GUID):
        by_id = company.tables[table].get(as_guid(id_value, id_key))
        if by_id is None:
            raise dialog(f'The "{id_key}" does not match to a {account_type}.')
    if number_value:
        by_number = ctx.state.find_by_number(company, table, as_text(number_value, number_key, 20))
        if by_number is None:
            raise dialog(f'The "{number_key}" does not match to a {account_type}.')
    if by_id is not None and by_number is not None and by_id is not by_number:
        noun = account_type[0].lower() + account_type[1:] if account_type == "Customer" else account_type
        raise dialog(f"The {noun} values do not match to a specific {account_type}.")
    return by_id or by_number


class JournalsSet(EntitySet):
    """``journals`` (general template) or ``customerPaymentJournals`` (cash receipts)."""

    ops = frozenset({"list", "get", "create", "update", "delete"})

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.name, self.type_name = "journals", "journal"
            self.lines_set: EntitySet = JournalLinesSet()
            lines_name = "journalLines"
            self.actions = {"post": self._post}
        else:
            self.name, self.type_name = "customerPaymentJournals", "customerPaymentJournal"
            self.lines_set = CustomerPaymentsSet()
            lines_name = "customerPayments"
            self.actions = {}
        self.navs = {lines_name: Nav(self.lines_set, lambda ctx, rec: Ctx(ctx.state, ctx.api, ctx.base, ctx.company, rec,
                                                                          f"{ctx.path}({rec.id})/{lines_name}"))}
        self.writable = {"code", "displayName", "balancingAccountId"}
        if kind == "general":
            self.writable.add("templateDisplayName")

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        f = [
            FieldDef("id", "guid", lambda j: j.id),
            FieldDef("code", "str", lambda j: j.code),
            FieldDef("displayName", "str", lambda j: j.display_name),
        ]
        if self.kind == "general":
            f.append(FieldDef("templateDisplayName", "str", lambda j: j.template))
        f += [
            FieldDef("lastModifiedDateTime", "datetime", lambda j: j.lm),
            FieldDef("balancingAccountId", "guid", lambda j: j.bal_account.id if isinstance(j.bal_account, Account) else BLANK_GUID),
            FieldDef("balancingAccountNumber", "str", lambda j: j.bal_account.number if j.bal_account is not None else ""),
        ]
        return f

    def source(self, ctx: Ctx) -> Source:
        kind = self.kind
        return TableSource(company_of(ctx).tables["journals"], where=lambda j: j.kind == kind)

    def find(self, ctx: Ctx, key: str) -> Any:
        journal = company_of(ctx).tables["journals"].get(key)
        if journal is None:
            return None
        # journals({id}) resolves the batch by SystemId whatever its template (reference §4)
        if self.kind == "general" or journal.kind == self.kind:
            return journal
        return None

    def _apply(self, ctx: Ctx, j: Journal, body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "displayName":
                j.display_name = as_text(value, key, 100)
            elif key == "balancingAccountId":
                gid = as_guid(value, key)
                if gid == BLANK_GUID:
                    j.bal_account = None
                else:
                    acc = company_of(ctx).tables["accounts"].get(gid)
                    if acc is None:
                        raise dialog('The "balancingAccountId" does not match to a G/L Account.')
                    j.bal_account = acc
            elif key == "templateDisplayName" and value not in ("GENERAL", j.template):
                raise dialog(f"The journal template {value} does not exist.")

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.writable)
        if not body.get("code"):
            raise BCApiError(400, "BadRequest_RequiredParamNotProvided", "The 'code' must be provided.")
        company = company_of(ctx)
        with ctx.state.lock:
            journal = ctx.state.add_journal(company, self.kind, body["code"], body.get("displayName", "") or "")
            self._apply(ctx, journal, {k: v for k, v in body.items() if k != "code"})
        return journal

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.writable - {"code"})
        with ctx.state.lock:
            self._apply(ctx, rec, body)
            ctx.state._touch(company_of(ctx), "journals", rec)
        return rec

    def delete(self, ctx: Ctx, rec: Any) -> None:
        with ctx.state.lock:
            ctx.state._touch(company_of(ctx), "journals", rec, "deleted")

    def _post(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.post_journal(company_of(ctx), rec)


class _JournalLineBase(EntitySet):
    ops = frozenset({"list", "get", "create", "update", "delete"})

    def source(self, ctx: Ctx) -> Source:
        return ListSource(ctx.parent.lines, key=lambda ln: ln.line_no)

    def find(self, ctx: Ctx, key: str) -> Any:
        return next((ln for ln in ctx.parent.lines if ln.id == key), None)

    def delete(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.delete_journal_line(ctx.parent, rec)


class CustomerPaymentsSet(_JournalLineBase):
    name, type_name = "customerPayments", "customerPayment"
    WRITABLE = {"journalId", "lineNumber", "customerId", "customerNumber", "postingDate", "documentNumber",
                "externalDocumentNumber", "amount", "appliesToInvoiceId", "appliesToInvoiceNumber", "description",
                "comment"}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda ln: ln.id),
            FieldDef("journalId", "guid", lambda ln: ln.journal.id),
            FieldDef("journalDisplayName", "str", lambda ln: ln.journal.code),
            FieldDef("lineNumber", "int", lambda ln: ln.line_no),
            FieldDef("customerId", "guid", lambda ln: ln.account.id if ln.account is not None else BLANK_GUID),
            FieldDef("customerNumber", "str", lambda ln: ln.account.number if ln.account is not None else ""),
            FieldDef("postingDate", "date", lambda ln: ln.posting_date),
            FieldDef("documentNumber", "str", lambda ln: ln.document_number),
            FieldDef("externalDocumentNumber", "str", lambda ln: ln.external_document_number),
            FieldDef("amount", "decimal", lambda ln: ln.amount),
            FieldDef("appliesToInvoiceId", "guid", lambda ln: ln.applies_to.id if ln.applies_to is not None else BLANK_GUID),
            FieldDef("appliesToInvoiceNumber", "str", lambda ln: ln.applies_to.number if ln.applies_to is not None else ""),
            FieldDef("description", "str", lambda ln: ln.description),
            FieldDef("comment", "str", lambda ln: ln.comment),
            FieldDef("lastModifiedDateTime", "datetime", lambda ln: ln.lm),
        ]

    def _apply(self, ctx: Ctx, ln: JournalLine, body: dict[str, Any], creating: bool) -> None:
        company = company_of(ctx)
        state = ctx.state
        if "customerId" in body or "customerNumber" in body:
            cust = _account_for(ctx, "Customer", body.get("customerId"), body.get("customerNumber"),
                                "customerId", "customerNumber")
            ln.account = cust
        invoice = None
        if body.get("appliesToInvoiceId") not in (None, BLANK_GUID):
            invoice = state.find_posted_invoice(company, id=as_guid(body["appliesToInvoiceId"], "appliesToInvoiceId"))
            if invoice is None:
                raise dialog('The "appliesToInvoiceId" should be the ID of an Open, Paid, Corrective, or Canceled Invoice.')
        if body.get("appliesToInvoiceNumber"):
            by_number = state.find_posted_invoice(company, number=as_text(body["appliesToInvoiceNumber"], "appliesToInvoiceNumber", 20))
            if by_number is None:
                raise dialog('The "appliesToInvoiceNumber" should be the number of an Open, Paid, Corrective, or Canceled Invoice.')
            if invoice is not None and invoice is not by_number:
                raise dialog("The invoice values do not match to a specific Invoice.")
            invoice = by_number
        if invoice is not None:
            ln.applies_to = invoice
            if ln.account is None:
                ln.account = invoice.bill_to
        elif body.get("appliesToInvoiceId") == BLANK_GUID:
            ln.applies_to = None
        for key, value in body.items():
            if key == "postingDate":
                ln.posting_date = as_date(value, key)
            elif key == "documentNumber":
                ln.document_number = to_code(value, key)
            elif key == "externalDocumentNumber":
                ln.external_document_number = as_text(value, key, 35)
            elif key == "amount":
                ln.amount = as_decimal(value, key)
            elif key == "description":
                ln.description = as_text(value, key, 100)
            elif key == "comment":
                ln.comment = as_text(value, key, 250)
        if creating and not ln.description and ln.account is not None:
            ln.description = ln.account.name

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        journal: Journal = ctx.parent
        if body.get("journalId") not in (None, journal.id):
            raise dialog("The journalId cannot be changed.")
        state = ctx.state
        with state.lock:
            line = JournalLine(ctx.state.new_id(), state.now_ms(), journal, 0)
            line.account_type = "Customer"
            self._apply(ctx, line, body, creating=True)
            state.add_journal_line(company_of(ctx), journal, line)
        return line

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        if "journalId" in body and body["journalId"] != rec.journal.id:
            raise dialog("The journalId cannot be changed.")
        with ctx.state.lock:
            self._apply(ctx, rec, body, creating=False)
            ctx.state.touch_journal_line(rec)
        return rec


class JournalLinesSet(_JournalLineBase):
    name, type_name = "journalLines", "journalLine"
    WRITABLE = {"journalId", "lineNumber", "accountType", "accountId", "accountNumber", "postingDate", "documentNumber",
                "externalDocumentNumber", "amount", "description", "comment", "taxCode", "balanceAccountType",
                "balancingAccountId", "balancingAccountNumber"}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda ln: ln.id),
            FieldDef("journalId", "guid", lambda ln: ln.journal.id),
            FieldDef("journalDisplayName", "str", lambda ln: ln.journal.code),
            FieldDef("lineNumber", "int", lambda ln: ln.line_no),
            FieldDef("accountType", "enum", lambda ln: ln.account_type),
            FieldDef("accountId", "guid", lambda ln: ln.account.id if ln.account is not None else BLANK_GUID),
            FieldDef("accountNumber", "str", lambda ln: ln.account.number if ln.account is not None else ""),
            FieldDef("postingDate", "date", lambda ln: ln.posting_date),
            FieldDef("documentNumber", "str", lambda ln: ln.document_number),
            FieldDef("externalDocumentNumber", "str", lambda ln: ln.external_document_number),
            FieldDef("amount", "decimal", lambda ln: ln.amount),
            FieldDef("description", "str", lambda ln: ln.description),
            FieldDef("comment", "str", lambda ln: ln.comment),
            FieldDef("taxCode", "str", lambda ln: ln.tax_code),
            FieldDef("balanceAccountType", "enum", lambda ln: ln.bal_type),
            FieldDef("balancingAccountId", "guid", lambda ln: ln.bal_account.id if ln.bal_account is not None else BLANK_GUID),
            FieldDef("balancingAccountNumber", "str", lambda ln: ln.bal_account.number if ln.bal_account is not None else ""),
            FieldDef("lastModifiedDateTime", "datetime", lambda ln: ln.lm),
        ]

    def _apply(self, ctx: Ctx, ln: JournalLine, body: dict[str, Any]) -> None:
        if "accountType" in body:
            ln.account_type = as_enum(body["accountType"], "accountType", ACCOUNT_TYPES)
            ln.account = None
        if "accountId" in body or "accountNumber" in body:
            ln.account = _account_for(ctx, ln.account_type, body.get("accountId"), body.get("accountNumber"),
                                      "accountId", "accountNumber")
        if "balanceAccountType" in body:
            ln.bal_type = as_enum(body["balanceAccountType"], "balanceAccountType", ACCOUNT_TYPES)
            ln.bal_account = None
        if "balancingAccountId" in body or "balancingAccountNumber" in body:
            ln.bal_account = _account_for(ctx, ln.bal_type, body.get("balancingAccountId"),
                                          body.get("balancingAccountNumber"), "balancingAccountId", "balancingAccountNumber")
        for key, value in body.items():
            if key == "postingDate":
                ln.posting_date = as_date(value, key)
            elif key == "documentNumber":
                ln.document_number = to_code(value, key)
            elif key == "externalDocumentNumber":
                ln.external_document_number = as_text(value, key, 35)
            elif key == "amount":
                ln.amount = as_decimal(value, key)
            elif key == "description":
                ln.description = as_text(value, key, 100)
            elif key == "comment":
                ln.comment = as_text(value, key, 250)
            elif key == "taxCode":
                ln.tax_code = to_code(value, key)

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        journal: Journal = ctx.parent
        if body.get("journalId") not in (None, journal.id):
            raise dialog("The journalId cannot be changed.")
        state = ctx.state
        with state.lock:
            line = JournalLine(ctx.state.new_id(), state.now_ms(), journal, 0)
            line.account_type = "G/L Account"
            self._apply(ctx, line, body)
            state.add_journal_line(company_of(ctx), journal, line)
        return line

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        self.check_body(ctx, body, self.WRITABLE)
        with ctx.state.lock:
            self._apply(ctx, rec, body)
            ctx.state.touch_journal_line(rec)
        return rec


class FlatCustomerPaymentsSet(CustomerPaymentsSet):
    """``companies({c})/customerPayments``: needs a journal (filter or journalId on POST)."""

    def source(self, ctx: Ctx) -> Source:
        raise dialog("You must specify a journal batch ID or a journal ID to get a journal line.")

    def source_for_filter(self, ctx: Ctx, journal_id: str | None) -> Source:
        if journal_id is None:
            raise dialog("You must specify a journal batch ID or a journal ID to get a journal line.")
        journal = company_of(ctx).tables["journals"].get(journal_id)
        lines = journal.lines if journal is not None and journal.kind == "payments" else []
        return ListSource(lines, key=lambda ln: ln.line_no)

    def find(self, ctx: Ctx, key: str) -> Any:
        for journal in company_of(ctx).tables["journals"].by_id.values():
            if journal.kind == "payments":
                for ln in journal.lines:
                    if ln.id == key:
                        return ln
        return None

    def create(self, ctx: Ctx, body: dict[str, Any]) -> Any:
        jid = body.get("journalId")
        if not jid:
            raise BCApiError(400, "BadRequest_RequiredParamNotProvided", "The 'journalId' must be provided.")
        journal = company_of(ctx).tables["journals"].get(as_guid(jid, "journalId"))
        if journal is None or journal.kind != "payments":
            raise dialog('The "journalId" does not match to a customer payment journal.')
        return super().create(Ctx(ctx.state, ctx.api, ctx.base, ctx.company, journal, ctx.path), body)

    def update(self, ctx: Ctx, rec: Any, body: dict[str, Any]) -> Any:
        return super().update(Ctx(ctx.state, ctx.api, ctx.base, ctx.company, rec.journal, ctx.path), body)

    def delete(self, ctx: Ctx, rec: Any) -> None:
        ctx.state.delete_journal_line(rec.journal, rec)


class GeneralLedgerEntriesSet(EntitySet):
    name, type_name = "generalLedgerEntries", "generalLedgerEntry"

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda e: e.id),
            FieldDef("entryNumber", "int", lambda e: e.entry_number),
            FieldDef("postingDate", "date", lambda e: e.posting_date),
            FieldDef("documentNumber", "str", lambda e: e.document_number),
            FieldDef("documentType", "enum", lambda e: e.document_type),
            FieldDef("accountId", "guid", lambda e: e.account.id),
            FieldDef("accountNumber", "str", lambda e: e.account.number),
            FieldDef("description", "str", lambda e: e.description),
            FieldDef("debitAmount", "decimal", lambda e: e.debit),
            FieldDef("creditAmount", "decimal", lambda e: e.credit),
            FieldDef("additionalCurrencyDebitAmount", "decimal", lambda e: ZERO),
            FieldDef("additionalCurrencyCreditAmount", "decimal", lambda e: ZERO),
            FieldDef("lastModifiedDateTime", "datetime", lambda e: e.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        return TableSource(company_of(ctx).tables["generalLedgerEntries"])

    def find(self, ctx: Ctx, key: str) -> Any:
        return company_of(ctx).tables["generalLedgerEntries"].get(key)


# ---------------------------------------------------------------------- companion API (payweave/payments/v1.0)

COMPANION_ORDER = ("order", "invoice", "returnOrder", "creditMemo")


def companion_status(d: SalesDoc) -> str:
    return "Posted" if d.posted else d.release


class SalesDocumentsSet(EntitySet):
    name, type_name = "salesDocuments", "salesDocument"

    def __init__(self) -> None:
        super().__init__()
        self.lines = SalesDocumentLinesSet()
        self.navs = {"salesDocumentLines": Nav(self.lines, lambda ctx, rec: Ctx(
            ctx.state, ctx.api, ctx.base, ctx.company, rec, f"{ctx.path}({rec.id})/salesDocumentLines"))}

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        lcy = company_of(ctx).lcy
        return [
            FieldDef("id", "guid", lambda d: d.id),
            FieldDef("documentType", "enum", lambda d: KIND_CAPTION[d.kind]),
            FieldDef("number", "str", lambda d: d.number),
            FieldDef("status", "enum", companion_status),
            FieldDef("customerId", "guid", lambda d: d.customer.id),
            FieldDef("customerNumber", "str", lambda d: d.customer.number),
            FieldDef("customerName", "str", lambda d: d.name),
            FieldDef("billToCustomerId", "guid", lambda d: d.bill_to.id),
            FieldDef("billToCustomerNumber", "str", lambda d: d.bill_to.number),
            FieldDef("billToName", "str", lambda d: d.bill_to.name),
            FieldDef("email", "str", lambda d: d.email),
            FieldDef("phoneNumber", "str", lambda d: d.phone),
            FieldDef("externalDocumentNumber", "str", lambda d: d.external_number),
            FieldDef("documentDate", "date", lambda d: d.document_date),
            FieldDef("postingDate", "date", lambda d: d.posting_date),
            FieldDef("dueDate", "date", lambda d: d.due_date),
            FieldDef("currencyCode", "str", lambda d: d.currency or lcy),
            FieldDef("paymentMethodCode", "str", lambda d: d.payment_method_code),
            FieldDef("pricesIncludeTax", "bool", lambda d: d.prices_include_tax),
            FieldDef("invoiceDiscountAmount", "decimal", lambda d: d.invoice_discount),
            FieldDef("paymentDiscountPercent", "decimal", lambda d: d.payment_discount_percent),
            FieldDef("prepaymentPercent", "decimal", lambda d: d.prepayment_percent),
            FieldDef("combineShipments", "bool", lambda d: d.combine_shipments),
            FieldDef("totalAmountExcludingTax", "decimal", lambda d: d.total_excl),
            FieldDef("totalTaxAmount", "decimal", lambda d: d.total_tax),
            FieldDef("totalAmountIncludingTax", "decimal", lambda d: d.total_incl),
            FieldDef("remainingAmount", "decimal", remaining_amount),
            FieldDef("appliesToInvoiceId", "guid", lambda d: d.applies_to_id),
            FieldDef("appliesToInvoiceNumber", "str", lambda d: d.applies_to_number),
            FieldDef("orderId", "guid", lambda d: d.order_id),
            FieldDef("orderNumber", "str", lambda d: d.order_number),
            FieldDef("lastModifiedDateTime", "datetime", lambda d: d.lm),
        ]

    def source(self, ctx: Ctx) -> Source:
        company = company_of(ctx)
        return UnionSource([TableSource(company.tables[KIND_TABLE[k]]) for k in COMPANION_ORDER])

    def find(self, ctx: Ctx, key: str) -> Any:
        return ctx.state.find_document(company_of(ctx), key)


class SalesDocumentLinesSet(EntitySet):
    name, type_name = "salesDocumentLines", "salesDocumentLine"

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda v: v.line.id),
            FieldDef("documentId", "guid", lambda v: v.doc.id),
            FieldDef("lineNumber", "int", lambda v: v.line.seq),
            FieldDef("type", "enum", lambda v: v.line.type),
            FieldDef("number", "str", lambda v: v.line.number),
            FieldDef("description", "str", lambda v: v.line.description),
            FieldDef("quantity", "decimal", lambda v: v.line.quantity),
            FieldDef("unitOfMeasureCode", "str", lambda v: v.line.uom),
            FieldDef("unitPrice", "decimal", lambda v: v.line.unit_price),
            FieldDef("lineDiscountPercent", "decimal", lambda v: v.line.discount_percent),
            FieldDef("lineDiscountAmount", "decimal", lambda v: v.amounts.discount),
            FieldDef("taxPercent", "decimal", lambda v: v.line.tax_percent),
            FieldDef("amountExcludingTax", "decimal", lambda v: v.amounts.excl),
            FieldDef("taxAmount", "decimal", lambda v: v.amounts.tax),
            FieldDef("amountIncludingTax", "decimal", lambda v: v.amounts.incl),
            FieldDef("invoiceDiscountAllocation", "decimal", lambda v: v.line.alloc),
            FieldDef("payweaveSubtype", "enum",
                     lambda v: v.line.ref.subtype if v.line.type == "Resource" and v.line.ref is not None else "None"),
        ]

    def etag(self, rec: Any) -> str:
        return etag_of(rec.line.ver, rec.line.seq)

    def source(self, ctx: Ctx) -> Source:
        return DocLinesSource(ctx.parent, company_of(ctx))


class DocumentEventsSet(EntitySet):
    name, type_name = "documentEvents", "documentEvent"

    def field_defs(self, ctx: Ctx) -> list[FieldDef]:
        return [
            FieldDef("id", "guid", lambda e: e.id),
            FieldDef("sequenceNumber", "int64", lambda e: e.seq),
            FieldDef("eventType", "enum", lambda e: e.event_type),
            FieldDef("documentId", "guid", lambda e: e.doc_id),
            FieldDef("documentType", "enum", lambda e: KIND_CAPTION[e.doc_kind]),
            FieldDef("documentNumber", "str", lambda e: e.doc_number),
            FieldDef("postedDocumentId", "guid", lambda e: e.posted_id),
            FieldDef("postedDocumentType", "enum", lambda e: KIND_CAPTION.get(e.posted_kind, " ")),
            FieldDef("postedDocumentNumber", "str", lambda e: e.posted_number),
            FieldDef("customerId", "guid", lambda e: e.customer_id),
            FieldDef("customerNumber", "str", lambda e: e.customer_number),
            FieldDef("customerName", "str", lambda e: e.customer_name),
            FieldDef("paymentMethodCode", "str", lambda e: e.payment_method_code),
            FieldDef("totalAmountIncludingTax", "decimal", lambda e: e.total_incl),
            FieldDef("currencyCode", "str", lambda e: e.currency),
            FieldDef("occurredAt", "datetime", lambda e: e.at_ms),
            FieldDef("lastModifiedDateTime", "datetime", lambda e: e.at_ms),
        ]

    def etag(self, rec: Any) -> str:
        return etag_of(1, rec.at_ms)

    def source(self, ctx: Ctx) -> Source:
        events = company_of(ctx).events
        return _EventSource(events)

    def find(self, ctx: Ctx, key: str) -> Any:
        return next((e for e in company_of(ctx).events if e.id == key), None)


class _EventSource(ListSource):
    """Events are appended with sequence numbers 1, 2, 3...: index = sequence - 1."""

    def __init__(self, events: list[DocEvent]) -> None:
        super().__init__(events, key=lambda e: e.seq, range_field="sequenceNumber")

    def scan(self, after: Any, lo: int | None, hi: int | None, descending: bool = False):  # type: ignore[override]
        start = 0
        if after is not None:
            start = int(after)
        if lo is not None:
            start = max(start, lo - 1)
        events = self.items
        end = len(events)
        for i in range(max(start, 0), end):
            e = events[i]
            if hi is not None and e.seq > hi:
                return
            yield e.seq, e


# ---------------------------------------------------------------------- registries

_INVOICES = SalesDocSet("invoice", "salesInvoices", "salesInvoice", "salesInvoiceLines", "invoiceDate")
_ORDERS = SalesDocSet("order", "salesOrders", "salesOrder", "salesOrderLines", "orderDate")
_CREDITS = SalesDocSet("creditMemo", "salesCreditMemos", "salesCreditMemo", "salesCreditMemoLines", "creditMemoDate")

COMPANIES = CompaniesSet()

STANDARD_SETS: dict[str, EntitySet] = {
    s.name: s for s in (
        CustomersSet(), ItemsSet(), AccountsSet(), BankAccountsSet(), _INVOICES, _ORDERS, _CREDITS,
        JournalsSet("general"), JournalsSet("payments"), FlatCustomerPaymentsSet(), GeneralLedgerEntriesSet(),
    )
}

COMPANION_SETS: dict[str, EntitySet] = {s.name: s for s in (SalesDocumentsSet(), DocumentEventsSet())}


def sets_for(api: str) -> dict[str, EntitySet]:
    return STANDARD_SETS if api == "v2.0" else COMPANION_SETS


__all__ = ["Ctx", "EntitySet", "STANDARD_SETS", "COMPANION_SETS", "COMPANIES", "sets_for", "GLEntry"]

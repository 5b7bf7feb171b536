"""BC JSON rows -> the contract's models (pure functions, no I/O).

Amounts arrive as JSON numbers parsed to Decimal/int by :mod:`.bcjson` and stay Decimal.
BC's blank values map to Python ones: the blank GUID and ``""`` to None where the model has an
optional id, the blank date ``0001-01-01`` to None.

The records of the sync streams (customers, invoices with their lines, credit memos: every row
of the initial sync goes through here) are built with :func:`_checked`: each field is already
converted to its declared type by this module (``str()``, ``int()``, :func:`dec` for finite
Decimals, :func:`opt_date`, :func:`last_modified` for aware datetimes), so pydantic's
validation could only repeat that work (its Decimal before-validators run in Python, several
per invoice line). The other models (documents, events, accounts) are validated as usual.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from payweave.hooks.models import (
    Customer,
    DocumentEvent,
    DocumentEventType,
    DocumentLine,
    DocumentLineType,
    DocumentStatus,
    DocumentType,
    ErpCreditMemo,
    ErpCustomer,
    ErpInvoice,
    InvoiceLine,
    LedgerAccount,
    ResourceSubtype,
    SalesDocument,
)
from payweave.hooks.money import to_decimal
from pydantic import BaseModel

from .client import BLANK_GUID, parse_bc_datetime

BLANK_DATE = "0001-01-01"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DOCUMENT_TYPES = {
    "Order": DocumentType.SALES_ORDER,
    "Invoice": DocumentType.SALES_INVOICE,
    "Return Order": DocumentType.SALES_RETURN_ORDER,
    "Credit Memo": DocumentType.SALES_CREDIT_MEMO,
}
DOCUMENT_TYPE_CAPTIONS = {v: k for k, v in DOCUMENT_TYPES.items()}

#: companion ``status`` -> contract status. "Pending Prepayment" is a released document waiting
#: for its prepayment invoice (prepayment % is refused by the core anyway).
DOCUMENT_STATUSES = {
    "Open": DocumentStatus.OPEN,
    "Released": DocumentStatus.RELEASED,
    "Pending Prepayment": DocumentStatus.RELEASED,
    "Pending Approval": DocumentStatus.PENDING_APPROVAL,
    "Posted": DocumentStatus.POSTED,
}

LINE_TYPES = {
    "Item": DocumentLineType.ITEM,
    "Resource": DocumentLineType.RESOURCE,
    "G/L Account": DocumentLineType.GL_ACCOUNT,
    "Charge (Item)": DocumentLineType.CHARGE_ITEM,
    "Comment": DocumentLineType.COMMENT,
    "Fixed Asset": DocumentLineType.FIXED_ASSET,
}

SUBTYPES = {"None": ResourceSubtype.NONE, " ": ResourceSubtype.NONE, "": ResourceSubtype.NONE,
            "Voucher": ResourceSubtype.VOUCHER, "Shipping": ResourceSubtype.SHIPPING}

EVENT_TYPES = {
    "Created": DocumentEventType.CHANGED,
    "Modified": DocumentEventType.CHANGED,
    "Released": DocumentEventType.RELEASED,
    "Reopened": DocumentEventType.REOPENED,
    "Posted": DocumentEventType.POSTED,
    "Partially Cancelled": DocumentEventType.PARTLY_CANCELLED,
    "Deleted": DocumentEventType.DELETED,
}


class MappingError(ValueError):
    """A row BC sent does not have the shape this connector expects."""


def _typed(fn: Callable[..., T]) -> Callable[..., T]:
    """Whatever an odd row makes go wrong while mapping it (a date that is no date, a number that
    is a list, a value the contract's model refuses) is a :class:`MappingError`, which the plugin
    turns into the contract's ``InvalidRequest`` (``erp_record_unreadable``), never a bare error."""

    @functools.wraps(fn)
    def mapped(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except MappingError:
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:  # pydantic's ValidationError is a ValueError
            detail = str(exc).splitlines()[0][:300]
            raise MappingError(f"{fn.__name__.removeprefix('to_').replace('_', ' ')}: {detail}") from exc

    return mapped


_set = object.__setattr__


def _construct(cls: type[M], values: dict[str, Any]) -> M:
    """What ``cls.model_construct(**values)`` builds when ``values`` names every field, without
    its per-field alias and default lookups (as slow as validating)."""
    record = cls.__new__(cls)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(values))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def _construct_checks(cls: type[BaseModel]) -> bool:
    """May :func:`_construct` build ``cls``? Only a plain model (no post-init, no private
    attributes, not a root model), and only while it still builds what validation builds (checked
    once on a sample, so a pydantic release that changes the model's internals falls back to
    validation instead of producing odd objects)."""
    if cls.__pydantic_post_init__ or cls.__private_attributes__ or cls.__pydantic_root_model__:
        return False
    sample = _SAMPLES[cls]
    try:
        built, validated = _construct(cls, dict(sample)), cls(**sample)
        return (built == validated and built.model_fields_set == validated.model_fields_set
                and built.__dict__ == validated.__dict__ and set(sample) == set(cls.model_fields))
    except Exception:  # pragma: no cover - a pydantic that works differently: validate instead
        return False


def _checked(cls: type[M], values: dict[str, Any]) -> M:
    """``cls(**values)`` for values this module already converted to the fields' types."""
    if _CONSTRUCTIBLE.get(cls, False):
        return _construct(cls, values)
    return cls(**values)


def dec(row: dict[str, Any], key: str) -> Decimal:
    value = row.get(key, 0)
    kind = type(value)
    if kind is Decimal and value.is_finite():  # bcjson parses every fraction as a finite Decimal
        return value
    if kind is int:  # and whole numbers as int (exact: no context rounding)
        return Decimal(value)
    try:
        return to_decimal(value if value is not None else 0)
    except Exception as exc:
        raise MappingError(f"'{key}' is not a decimal: {value!r}") from exc


def opt_id(value: Any) -> str | None:
    if not value or value == BLANK_GUID:
        return None
    return str(value).lower()


def opt_date(value: Any) -> date | None:
    if not value or value == BLANK_DATE:
        return None
    return date.fromisoformat(str(value))


def last_modified(row: dict[str, Any]) -> datetime:
    value = row.get("lastModifiedDateTime")
    if not value:
        raise MappingError("row without lastModifiedDateTime")
    return parse_bc_datetime(str(value))


def _req(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise MappingError(f"row without '{key}'")
    return row[key]


required = _req


def sequence_number(row: dict[str, Any]) -> int:
    """The companion event log's ``sequenceNumber`` (a MappingError when missing or not a number)."""
    value = _req(row, "sequenceNumber")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MappingError(f"'sequenceNumber' is not a number: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise MappingError(f"'sequenceNumber' is not a number: {value!r}") from None


@_typed
def to_customer(row: dict[str, Any]) -> ErpCustomer:
    blocked = str(row.get("blocked") or "").strip()
    return _checked(ErpCustomer, {
        "customer_id": str(_req(row, "id")).lower(), "number": str(row.get("number", "")),
        "name": str(row.get("displayName", "")), "email": str(row.get("email") or ""),
        "currency": str(row.get("currencyCode") or ""), "blocked": blocked, "last_modified": last_modified(row),
    })


@_typed
def to_invoice_line(row: dict[str, Any]) -> InvoiceLine:
    # net* amounts include the invoice-discount allocation, so lines add up to the header totals
    line_discount = dec(row, "discountAmount") + dec(row, "invoiceDiscountAllocation")
    has_net = "netAmount" in row
    return _checked(InvoiceLine, {
        "line_id": str(_req(row, "id")).lower(), "line_no": int(row.get("sequence", 0)),
        "type": str(row.get("lineType", "")), "number": str(row.get("lineObjectNumber") or ""),
        "description": str(row.get("description") or ""), "quantity": dec(row, "quantity"),
        "unit_price": dec(row, "unitPrice"), "discount_amount": line_discount,
        "amount_excluding_tax": dec(row, "netAmount" if has_net else "amountExcludingTax"),
        "tax_amount": dec(row, "netTaxAmount" if has_net else "totalTaxAmount"),
        "amount_including_tax": dec(row, "netAmountIncludingTax" if has_net else "amountIncludingTax"),
    })


@_typed
def to_invoice(row: dict[str, Any]) -> ErpInvoice:
    lm = last_modified(row)
    invoice_date = opt_date(row.get("invoiceDate")) or opt_date(row.get("postingDate")) or lm.date()
    lines = tuple(sorted((to_invoice_line(r) for r in row.get("salesInvoiceLines") or ()), key=lambda ln: ln.line_no))
    return _checked(ErpInvoice, {
        "invoice_id": str(_req(row, "id")).lower(), "number": str(row.get("number", "")),
        "customer_id": str(_req(row, "customerId")).lower(), "customer_number": str(row.get("customerNumber") or ""),
        "invoice_date": invoice_date, "due_date": opt_date(row.get("dueDate")),
        "currency": str(row.get("currencyCode") or ""), "status": str(row.get("status", "")),
        "total_excluding_tax": dec(row, "totalAmountExcludingTax"), "total_tax": dec(row, "totalTaxAmount"),
        "total_including_tax": dec(row, "totalAmountIncludingTax"), "remaining_amount": dec(row, "remainingAmount"),
        "order_id": opt_id(row.get("orderId")), "lines": lines, "last_modified": lm,
    })


@_typed
def to_credit_memo(row: dict[str, Any]) -> ErpCreditMemo:
    lm = last_modified(row)
    return _checked(ErpCreditMemo, {
        "credit_memo_id": str(_req(row, "id")).lower(), "number": str(row.get("number", "")),
        "customer_id": str(_req(row, "customerId")).lower(), "invoice_id": opt_id(row.get("invoiceId")),
        "currency": str(row.get("currencyCode") or ""), "status": str(row.get("status", "")),
        "total_including_tax": dec(row, "totalAmountIncludingTax"),
        "credit_memo_date": opt_date(row.get("creditMemoDate")) or opt_date(row.get("postingDate")) or lm.date(),
        "last_modified": lm,
    })


@_typed
def to_document_line(row: dict[str, Any], shipping_items: frozenset[str] = frozenset()) -> DocumentLine:
    line_type = LINE_TYPES.get(str(row.get("type", "")))
    if line_type is None:
        raise MappingError(f"unknown sales line type {row.get('type')!r}")
    subtype = SUBTYPES.get(str(row.get("payweaveSubtype", "None")))
    if subtype is None:
        raise MappingError(f"unknown payweave subtype {row.get('payweaveSubtype')!r}")
    number = str(row.get("number") or "")
    return DocumentLine(
        line_no=int(_req(row, "lineNumber")), type=line_type, number=number,
        description=str(row.get("description") or ""), quantity=dec(row, "quantity"), unit_price=dec(row, "unitPrice"),
        line_discount_percent=dec(row, "lineDiscountPercent"), line_discount_amount=dec(row, "lineDiscountAmount"),
        tax_percent=dec(row, "taxPercent"), amount_excluding_tax=dec(row, "amountExcludingTax"),
        amount_including_tax=dec(row, "amountIncludingTax"), resource_subtype=subtype,
        is_shipping_item=line_type is DocumentLineType.ITEM and number in shipping_items,
    )


@_typed
def to_sales_document(company_id: str, row: dict[str, Any], shipping_items: frozenset[str] = frozenset()) -> SalesDocument:
    doc_type = DOCUMENT_TYPES.get(str(row.get("documentType", "")))
    if doc_type is None:
        raise MappingError(f"unknown document type {row.get('documentType')!r}")
    status = DOCUMENT_STATUSES.get(str(row.get("status", "")))
    if status is None:
        raise MappingError(f"unknown document status {row.get('status')!r}")
    lines = tuple(sorted((to_document_line(r, shipping_items) for r in row.get("salesDocumentLines") or ()),
                         key=lambda ln: ln.line_no))
    return SalesDocument(
        company_id=company_id, document_type=doc_type, document_id=str(_req(row, "id")).lower(),
        number=str(row.get("number", "")),
        customer=Customer(customer_id=str(_req(row, "customerId")).lower(), number=str(row.get("customerNumber") or ""),
                          name=str(row.get("customerName") or ""), email=str(row.get("email") or "")),
        currency=str(_req(row, "currencyCode")), payment_method_code=str(row.get("paymentMethodCode") or "") or None,
        status=status, prices_include_tax=bool(row.get("pricesIncludeTax", False)), lines=lines,
        invoice_discount_amount=dec(row, "invoiceDiscountAmount"),
        payment_discount_percent=dec(row, "paymentDiscountPercent"), prepayment_percent=dec(row, "prepaymentPercent"),
        combine_shipments=bool(row.get("combineShipments", False)),
        total_excluding_tax=dec(row, "totalAmountExcludingTax"), total_tax=dec(row, "totalTaxAmount"),
        total_including_tax=dec(row, "totalAmountIncludingTax"),
        applies_to_invoice_id=opt_id(row.get("appliesToInvoiceId")),
        applies_to_invoice_number=str(row.get("appliesToInvoiceNumber") or "") or None,
        order_id=opt_id(row.get("orderId")), last_modified=last_modified(row),
    )


@_typed
def document_from_event(company_id: str, event: dict[str, Any]) -> SalesDocument:
    """The document as the event row describes it (for a deleted document: all that is left)."""
    doc_type = DOCUMENT_TYPES.get(str(event.get("documentType", "")))
    if doc_type is None:
        raise MappingError(f"unknown document type {event.get('documentType')!r}")
    return SalesDocument(
        company_id=company_id, document_type=doc_type, document_id=str(_req(event, "documentId")).lower(),
        number=str(event.get("documentNumber", "")),
        customer=Customer(customer_id=str(event.get("customerId") or BLANK_GUID).lower(),
                          number=str(event.get("customerNumber") or ""), name=str(event.get("customerName") or "")),
        currency=str(_req(event, "currencyCode")), payment_method_code=str(event.get("paymentMethodCode") or "") or None,
        status=DocumentStatus.POSTED if event.get("eventType") == "Posted" else DocumentStatus.OPEN,
        total_including_tax=dec(event, "totalAmountIncludingTax"), last_modified=last_modified(event),
    )


@_typed
def to_document_event(event: dict[str, Any], document: SalesDocument) -> DocumentEvent:
    event_type = EVENT_TYPES.get(str(event.get("eventType", "")))
    if event_type is None:
        raise MappingError(f"unknown document event type {event.get('eventType')!r}")
    return DocumentEvent(
        event_id=str(_req(event, "id")).lower(), type=event_type, document=document,
        occurred_at=parse_bc_datetime(str(_req(event, "occurredAt"))),
        posted_document_id=opt_id(event.get("postedDocumentId")),
        posted_document_number=str(event.get("postedDocumentNumber") or "") or None,
    )


@_typed
def to_gl_account(row: dict[str, Any]) -> LedgerAccount:
    return LedgerAccount(account_id=str(_req(row, "id")).lower(), number=str(row.get("number", "")),
                         name=str(row.get("displayName", "")), kind="gl_account",
                         category=str(row.get("category") or "").strip(), blocked=bool(row.get("blocked", False)))


@_typed
def to_bank_account(row: dict[str, Any]) -> LedgerAccount:
    return LedgerAccount(account_id=str(_req(row, "id")).lower(), number=str(row.get("number", "")),
                         name=str(row.get("displayName", "")), kind="bank_account", category="Bank",
                         blocked=bool(row.get("blocked", False)))


# complete, valid values of each model :func:`_checked` builds (every field named)
_AT = datetime(2026, 1, 1, tzinfo=UTC)
_LINE = {"line_id": "l", "line_no": 10000, "type": "Item", "number": "1000", "description": "d",
         "quantity": Decimal(2), "unit_price": Decimal("1.50"), "discount_amount": Decimal(0),
         "amount_excluding_tax": Decimal("3.00"), "tax_amount": Decimal("0.30"), "amount_including_tax": Decimal("3.30")}
_SAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    ErpCustomer: {"customer_id": "c", "number": "C1", "name": "n", "email": "e@x", "currency": "EUR", "blocked": "",
                  "last_modified": _AT},
    InvoiceLine: _LINE,
    ErpInvoice: {"invoice_id": "i", "number": "I1", "customer_id": "c", "customer_number": "C1",
                 "invoice_date": _AT.date(), "due_date": None, "currency": "EUR", "status": "Open",
                 "total_excluding_tax": Decimal("3.00"), "total_tax": Decimal("0.30"),
                 "total_including_tax": Decimal("3.30"), "remaining_amount": Decimal("3.30"), "order_id": None,
                 "lines": (InvoiceLine(**_LINE),), "last_modified": _AT},
    ErpCreditMemo: {"credit_memo_id": "m", "number": "M1", "customer_id": "c", "invoice_id": None, "currency": "EUR",
                    "status": "Open", "total_including_tax": Decimal("1.00"), "credit_memo_date": _AT.date(),
                    "last_modified": _AT},
}
_CONSTRUCTIBLE: dict[type[BaseModel], bool] = {cls: _construct_checks(cls) for cls in _SAMPLES}

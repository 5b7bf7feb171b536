"""Builders for BC sales documents and document events (tests, the demo, benchmarks).

    order = sales_document(lines=[item_line(10000, "100.00", tax="19")])   # totals computed
    engine.handle_event(document_event("released", order))
"""
from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from payweave.hooks.models import (
    Customer,
    DocumentEvent,
    DocumentEventType,
    DocumentLine,
    DocumentLineType,
    DocumentType,
    ResourceSubtype,
    SalesDocument,
)
from payweave.hooks.money import round_money, to_decimal

_numbers = itertools.count(1001)

CUSTOMER = Customer(customer_id="cust-10000", number="10000", name="Adatum Corporation", email="ap@adatum.example")


def document_line(
    line_no: int,
    unit_price: str | Decimal | int,
    *,
    quantity: str | Decimal | int = 1,
    type: DocumentLineType | str = DocumentLineType.ITEM,
    tax: str | Decimal | int = 0,
    discount_percent: str | Decimal | int = 0,
    discount_amount: str | Decimal | int | None = None,
    subtype: ResourceSubtype | str = ResourceSubtype.NONE,
    shipping: bool = False,
    number: str | None = None,
    description: str = "",
    currency: str = "EUR",
    prices_include_tax: bool = False,
    with_amounts: bool = True,
) -> DocumentLine:
    """A line with BC's computed amounts (line discount, then tax, rounded per line)."""
    q, p, rate = to_decimal(quantity), to_decimal(unit_price), to_decimal(tax)
    base = round_money(q * p, currency)
    if discount_amount is not None:
        discount = to_decimal(discount_amount)
    else:
        discount = round_money(q * p * to_decimal(discount_percent) / 100, currency)
    amount = base - discount
    if prices_include_tax:
        gross = amount
        net = round_money(gross * 100 / (100 + rate), currency)
    else:
        net = amount
        gross = net + round_money(net * rate / 100, currency)
    line_type = DocumentLineType(type)
    return DocumentLine(
        line_no=line_no,
        type=line_type,
        number=number or f"{line_type.value.upper()}-{line_no}",
        description=description or f"{line_type.value} {line_no}",
        quantity=q,
        unit_price=p,
        line_discount_percent=to_decimal(discount_percent),
        line_discount_amount=discount,
        tax_percent=rate,
        amount_excluding_tax=net if with_amounts else Decimal(0),
        amount_including_tax=gross if with_amounts else Decimal(0),
        resource_subtype=ResourceSubtype(subtype),
        is_shipping_item=shipping,
    )


def item_line(line_no: int, unit_price: Any, **kw: Any) -> DocumentLine:
    return document_line(line_no, unit_price, **kw)


def shipping_line(line_no: int, unit_price: Any, *, as_resource: bool = False, **kw: Any) -> DocumentLine:
    if as_resource:
        return document_line(line_no, unit_price, type=DocumentLineType.RESOURCE, subtype=ResourceSubtype.SHIPPING, **kw)
    return document_line(line_no, unit_price, shipping=True, **kw)


def voucher_line(line_no: int, value: Any, **kw: Any) -> DocumentLine:
    """A voucher redeemed on the document: a resource with the voucher subtype, negative amount."""
    return document_line(line_no, -to_decimal(value), type=DocumentLineType.RESOURCE, subtype=ResourceSubtype.VOUCHER, **kw)


def gl_line(line_no: int, unit_price: Any, *, account: str = "6610", **kw: Any) -> DocumentLine:
    return document_line(line_no, unit_price, type=DocumentLineType.GL_ACCOUNT, number=account, **kw)


def sales_document(
    document_type: DocumentType | str = DocumentType.SALES_ORDER,
    *,
    company_id: str = "CRONUS",
    document_id: str | None = None,
    number: str | None = None,
    lines: list[DocumentLine] | tuple[DocumentLine, ...] | None = None,
    payment_method_code: str | None = "CARD",
    currency: str = "EUR",
    customer: Customer = CUSTOMER,
    totals: tuple[Any, Any] | None = None,
    **fields: Any,
) -> SalesDocument:
    """A sales document whose totals are the sums of its lines (unless ``totals`` overrides)."""
    doc_type = DocumentType(document_type)
    prefix = {"sales_order": "SO", "sales_invoice": "SI", "sales_return_order": "SRO", "sales_credit_memo": "SCM"}[doc_type.value]
    lines = tuple(lines) if lines is not None else (item_line(10000, "100.00", tax="19", currency=currency),)
    net = sum((line.amount_excluding_tax for line in lines), Decimal(0))
    gross = sum((line.amount_including_tax for line in lines), Decimal(0))
    if totals is not None:
        net, gross = to_decimal(totals[0]), to_decimal(totals[1])
    return SalesDocument(
        company_id=company_id,
        document_type=doc_type,
        document_id=document_id or str(uuid.uuid4()),
        number=number or f"{prefix}-{next(_numbers)}",
        customer=customer,
        currency=currency,
        payment_method_code=payment_method_code,
        lines=lines,
        total_excluding_tax=net,
        total_tax=gross - net,
        total_including_tax=gross,
        **fields,
    )


def document_event(
    event_type: DocumentEventType | str,
    document: SalesDocument,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    **fields: Any,
) -> DocumentEvent:
    return DocumentEvent(
        event_id=event_id or f"evt-{uuid.uuid4()}",
        type=DocumentEventType(event_type),
        document=document,
        occurred_at=occurred_at or datetime.now(UTC),
        **fields,
    )


def changed(document: SalesDocument, **fields: Any) -> SalesDocument:
    """A copy of ``document`` with ``fields`` replaced; new lines recompute the totals."""
    if "lines" in fields and "total_including_tax" not in fields:
        lines = tuple(fields["lines"])
        net = sum((line.amount_excluding_tax for line in lines), Decimal(0))
        gross = sum((line.amount_including_tax for line in lines), Decimal(0))
        fields.update(lines=lines, total_excluding_tax=net, total_tax=gross - net, total_including_tax=gross)
    return document.model_copy(update=fields)


def posted_invoice(order: SalesDocument, *, lines: list[DocumentLine] | None = None, **fields: Any) -> SalesDocument:
    """The posted sales invoice of ``order`` (all its lines unless ``lines`` says otherwise)."""
    return sales_document(
        DocumentType.SALES_INVOICE,
        company_id=order.company_id,
        lines=lines if lines is not None else list(order.lines),
        payment_method_code=order.payment_method_code,
        currency=order.currency,
        customer=order.customer,
        order_id=order.document_id,
        status="posted",
        **fields,
    )


def credit_memo(
    invoice_id: str,
    *,
    lines: list[DocumentLine],
    document_type: DocumentType | str = DocumentType.SALES_CREDIT_MEMO,
    invoice_number: str | None = None,
    **fields: Any,
) -> SalesDocument:
    return sales_document(
        document_type, lines=lines, applies_to_invoice_id=invoice_id, applies_to_invoice_number=invoice_number, **fields
    )

"""Cart building: BC document lines -> the contract's :class:`~payweave.hooks.models.Cart`.

* Amounts are Decimal in the document currency's precision (``payweave.hooks.money``).
* A line's amounts come from BC (``amount_excluding_tax`` / ``amount_including_tax``) when it
  has them; otherwise they are computed from quantity, unit price, line discount and tax rate
  (prices including or excluding tax), rounded per line with the currency's precision.
* Line discounts stay on their line (``discount_amount``); vouchers become negative lines;
  shipping is an item flagged as shipping or a resource with the shipping subtype.
* The cart total must equal the document total to the minor unit, or the document is refused
  with both figures.
"""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from payweave.core.errors import CartTotalMismatch, UnsupportedDocumentLine
from payweave.hooks.models import (
    Cart,
    CartLine,
    DocumentLine,
    DocumentLineType,
    LineKind,
    ResourceSubtype,
    SalesDocument,
)
from payweave.hooks.money import MoneyError, check_precision, round_money

from .rules import describe

HUNDRED = Decimal(100)


def line_kind(line: DocumentLine) -> LineKind | None:
    """The cart kind of a document line (None: not a cart line, e.g. a comment)."""
    if line.type is DocumentLineType.COMMENT:
        return None
    if line.type is DocumentLineType.ITEM:
        return LineKind.SHIPPING if line.is_shipping_item else LineKind.ITEM
    if line.type is DocumentLineType.RESOURCE:
        return {
            ResourceSubtype.VOUCHER: LineKind.VOUCHER,
            ResourceSubtype.SHIPPING: LineKind.SHIPPING,
        }.get(line.resource_subtype, LineKind.RESOURCE)
    if line.type is DocumentLineType.GL_ACCOUNT:
        return LineKind.GL_ACCOUNT
    if line.type is DocumentLineType.CHARGE_ITEM:
        return LineKind.ITEM
    raise UnsupportedDocumentLine(
        f"Line {line.line_no} of type '{line.type.value}' cannot be part of a cart.",
        details={"line_no": line.line_no, "type": line.type.value},
    )


def _exact(document: SalesDocument, line: DocumentLine, field: str) -> Decimal:
    value = getattr(line, field)
    try:
        return check_precision(value, document.currency)
    except MoneyError as exc:
        raise MoneyError(
            f"{describe(document)} line {line.line_no}: {exc.message}",
            details={**exc.details, "line_no": line.line_no, "field": field},
        ) from None


def cart_line(document: SalesDocument, line: DocumentLine) -> CartLine | None:
    kind = line_kind(line)
    if kind is None:
        return None
    cur = document.currency
    rate = line.tax_percent
    gross_price = line.quantity * line.unit_price
    if line.line_discount_amount:
        discount = _exact(document, line, "line_discount_amount")
    elif line.line_discount_percent:
        discount = round_money(gross_price * line.line_discount_percent / HUNDRED, cur)
    else:
        discount = Decimal(0)
    if line.amount_excluding_tax or line.amount_including_tax:
        net = _exact(document, line, "amount_excluding_tax")
        gross = _exact(document, line, "amount_including_tax")
    else:
        base = round_money(gross_price, cur) - discount
        if document.prices_include_tax:
            gross = base
            net = round_money(gross * HUNDRED / (HUNDRED + rate), cur) if rate else gross
        else:
            net = base
            gross = net + round_money(net * rate / HUNDRED, cur)
    tax = gross - net
    if kind is LineKind.VOUCHER and gross > 0:
        raise UnsupportedDocumentLine(
            f"{describe(document)} line {line.line_no} is a voucher with a positive amount ({gross}); a voucher "
            f"must reduce the total (enter it with a negative quantity or price).",
            details={"line_no": line.line_no, "amount": str(gross)},
        )
    return CartLine(
        line_id=str(line.line_no),
        kind=kind,
        number=line.number,
        description=line.description,
        quantity=line.quantity,
        unit_price=line.unit_price,
        discount_amount=discount,
        tax_rate=rate,
        net_amount=net,
        tax_amount=tax,
        gross_amount=gross,
    )


def build_cart(document: SalesDocument) -> Cart:
    """The cart of ``document``; refuses it when the cart does not add up to the document total."""
    lines = tuple(cl for cl in (cart_line(document, line) for line in document.lines) if cl is not None)
    cur = document.currency
    net = sum((cl.net_amount for cl in lines), Decimal(0))
    tax = sum((cl.tax_amount for cl in lines), Decimal(0))
    gross = sum((cl.gross_amount for cl in lines), Decimal(0))
    try:
        doc_gross = check_precision(document.total_including_tax, cur)
        doc_net = check_precision(document.total_excluding_tax, cur)
    except MoneyError as exc:
        raise MoneyError(f"{describe(document)} total: {exc.message}", details=exc.details) from None
    if gross != doc_gross:
        raise CartTotalMismatch(
            f"{describe(document)}: the lines add up to {gross} {cur} including tax, but the document total is "
            f"{doc_gross} {cur}. The document was not processed.",
            details={"cart_total": str(gross), "document_total": str(doc_gross), "currency": cur},
        )
    if doc_net != 0 and net != doc_net:
        raise CartTotalMismatch(
            f"{describe(document)}: the lines add up to {net} {cur} excluding tax, but the document total "
            f"excluding tax is {doc_net} {cur}. The document was not processed.",
            details={"cart_total_net": str(net), "document_total_net": str(doc_net), "currency": cur},
        )
    return Cart(currency=cur, lines=lines, total_net=net, total_tax=tax, total_gross=gross)


def document_total(document: SalesDocument) -> Decimal:
    try:
        return check_precision(document.total_including_tax, document.currency)
    except MoneyError as exc:
        raise MoneyError(f"{describe(document)} total: {exc.message}", details=exc.details) from None


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, str | int | bool):
        return value.value
    return value


def _digest(data: Any) -> str:
    text = json.dumps(_canonical(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cart_hash(cart: Cart | None, amount: Decimal | None = None) -> str:
    if cart is None:
        return _digest({"total": amount})
    return _digest(cart.model_dump())


def content_hash(document: SalesDocument) -> str:
    """Fingerprint of everything in a document that matters for payment (lines, totals, currency,
    customer, unsupported-feature fields); status and timestamps are left out."""
    data = document.model_dump(
        include={
            "currency",
            "customer",
            "payment_method_code",
            "prices_include_tax",
            "lines",
            "invoice_discount_amount",
            "payment_discount_percent",
            "prepayment_percent",
            "combine_shipments",
            "total_excluding_tax",
            "total_tax",
            "total_including_tax",
        },
    )
    return _digest(data)

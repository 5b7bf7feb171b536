"""Sales document arithmetic, the way a Sales Line computes it.

    gross        = round(quantity * unitPrice)
    lineDiscount = round(gross * discount% / 100)
    lineAmount   = gross - lineDiscount                  (incl. tax when pricesIncludeTax)
    excl         = lineAmount, or round(lineAmount / (1 + tax%/100)) when prices include tax
    tax          = round(excl * tax% / 100), or lineAmount - excl when prices include tax
    net          = excl - invoiceDiscountAllocation; netTax = round(net * tax%/100)

Header totals are the sums of the lines' net amounts and are cached on the header
(:func:`recompute`); line amounts are derived on read (:func:`line_amounts`).
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from .model import HUNDRED, ZERO, Line, SalesDoc, round_amount


@lru_cache(maxsize=64)
def precision_for(currency: str, lcy_precision: Decimal) -> Decimal:
    if not currency:
        return lcy_precision
    try:
        from payweave.hooks.money import quantum

        return quantum(currency)
    except Exception:  # an unknown currency code in BC still rounds to cents
        return Decimal("0.01")


class LineAmounts(NamedTuple):
    gross: Decimal
    discount: Decimal
    excl: Decimal
    tax: Decimal
    incl: Decimal
    net: Decimal
    net_tax: Decimal
    net_incl: Decimal


_ZERO_AMOUNTS = LineAmounts(ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO)


def line_amounts(line: Line, prices_include_tax: bool, precision: Decimal) -> LineAmounts:
    if line.type == "Comment":
        return _ZERO_AMOUNTS
    gross = round_amount(line.quantity * line.unit_price, precision)
    discount = round_amount(gross * line.discount_percent / HUNDRED, precision) if line.discount_percent else ZERO
    line_amount = gross - discount
    rate = line.tax_percent
    if prices_include_tax:
        excl = round_amount(line_amount / (1 + rate / HUNDRED), precision) if rate else line_amount
        tax = line_amount - excl
    else:
        excl = line_amount
        tax = round_amount(excl * rate / HUNDRED, precision) if rate else ZERO
    incl = excl + tax
    if line.alloc:
        net = excl - line.alloc
        net_tax = round_amount(net * rate / HUNDRED, precision) if rate else ZERO
    else:
        net, net_tax = excl, tax
    return LineAmounts(gross, discount, excl, tax, incl, net, net_tax, net + net_tax)


def doc_precision(doc: SalesDoc, lcy_precision: Decimal) -> Decimal:
    return precision_for(doc.currency, lcy_precision)


def recompute(doc: SalesDoc, lcy_precision: Decimal) -> None:
    """Re-allocate the invoice discount and refresh the cached header totals."""
    precision = doc_precision(doc, lcy_precision)
    pit = doc.prices_include_tax
    lines = [ln for ln in doc.lines if ln.type != "Comment"]
    for ln in doc.lines:
        ln.alloc = ZERO
    if doc.invoice_discount and lines:
        base = [line_amounts(ln, pit, precision).excl for ln in lines]
        total = sum(base, ZERO)
        if total:
            left = doc.invoice_discount
            for ln, amount in zip(lines[:-1], base[:-1], strict=True):
                share = round_amount(doc.invoice_discount * amount / total, precision)
                ln.alloc = share
                left -= share
            lines[-1].alloc = left
    excl = tax = ZERO
    for ln in lines:
        a = line_amounts(ln, pit, precision)
        excl += a.net
        tax += a.net_tax
    doc.total_excl = excl
    doc.total_tax = tax
    doc.total_incl = excl + tax

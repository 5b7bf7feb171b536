"""Small builders for tests that drive psp_mock (also handy in engine tests).

    reserve_request("10.00")                    # EUR, with a one-line cart, unique key
    capture_request(ref, "4.00", final=False)
"""
from __future__ import annotations

import itertools
from decimal import ROUND_DOWN, Decimal
from typing import Any

from payweave.hooks.models import (
    CaptureRequest,
    Cart,
    CartLine,
    CreditRequest,
    Customer,
    LineKind,
    RefundRequest,
    ReserveRequest,
    VoidRequest,
)
from payweave.hooks.money import Money, quantum

_keys = itertools.count(1)


def key(prefix: str = "k") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


def money(value: str | int | Decimal, currency: str = "EUR") -> Money:
    return Money.of(value, currency)


def cart_of(total: str | Decimal, currency: str = "EUR", lines: int = 1) -> Cart:
    """A tax-free cart of ``lines`` item lines that sum exactly to ``total``."""
    amount = Money.of(total, currency).amount
    base = (amount / lines).quantize(quantum(currency), rounding=ROUND_DOWN)
    values = [base] * (lines - 1) + [amount - base * (lines - 1)]
    cart_lines = tuple(
        CartLine(line_id=str(i + 1), kind=LineKind.ITEM, number=f"ITEM-{i + 1}", unit_price=v, net_amount=v, gross_amount=v)
        for i, v in enumerate(values)
    )
    return Cart(currency=currency, lines=cart_lines, total_net=amount, total_tax=Decimal(0), total_gross=amount)


CUSTOMER = Customer(customer_id="cust-1", number="C10000", name="Adatum Corporation", email="ap@adatum.example")


def reserve_request(amount: str | Decimal = "10.00", currency: str = "EUR", *, cart: bool = True, **kw: Any) -> ReserveRequest:
    kw.setdefault("idempotency_key", key("reserve"))
    kw.setdefault("transaction_id", "tx-1")
    kw.setdefault("customer", CUSTOMER)
    return ReserveRequest(
        amount=money(amount, currency), cart=cart_of(amount, currency) if cart else None, **kw
    )


def capture_request(ref: str, amount: str | Decimal, currency: str = "EUR", **kw: Any) -> CaptureRequest:
    kw.setdefault("idempotency_key", key("capture"))
    kw.setdefault("transaction_id", "tx-1")
    return CaptureRequest(psp_reference=ref, amount=money(amount, currency), **kw)


def void_request(ref: str, amount: str | Decimal | None = None, currency: str = "EUR", **kw: Any) -> VoidRequest:
    kw.setdefault("idempotency_key", key("void"))
    kw.setdefault("transaction_id", "tx-1")
    return VoidRequest(psp_reference=ref, amount=None if amount is None else money(amount, currency), **kw)


def refund_request(ref: str, amount: str | Decimal, currency: str = "EUR", **kw: Any) -> RefundRequest:
    kw.setdefault("idempotency_key", key("refund"))
    kw.setdefault("transaction_id", "tx-1")
    return RefundRequest(psp_reference=ref, amount=money(amount, currency), **kw)


def credit_request(ref: str | None, amount: str | Decimal, currency: str = "EUR", **kw: Any) -> CreditRequest:
    kw.setdefault("idempotency_key", key("credit"))
    kw.setdefault("transaction_id", "tx-1")
    return CreditRequest(psp_reference=ref, amount=money(amount, currency), **kw)

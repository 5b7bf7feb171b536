"""Boundary models: carts must add up, requests are frozen and strict, datetimes are aware."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from payweave.hooks.models import Cart, CartLine, Money, Payout, ReservationResult, ReserveRequest


def line(i, net, tax, kind="item"):
    return CartLine(line_id=str(i), kind=kind, unit_price=net, net_amount=net, tax_amount=tax,
                    gross_amount=Decimal(net) + Decimal(tax))


def test_cart_totals_must_equal_lines():
    lines = (line(1, "10.00", "1.90"), line(2, "-2.00", "-0.38", "voucher"))
    cart = Cart(currency="eur", lines=lines, total_net="8.00", total_tax="1.52", total_gross="9.52")
    assert cart.total == Money.of("9.52", "EUR")
    with pytest.raises(ValidationError, match="do not equal the sum of the lines"):
        Cart(currency="EUR", lines=lines, total_net="8.00", total_tax="1.52", total_gross="9.53")


def test_cart_line_amounts_respect_currency_precision():
    with pytest.raises(ValidationError, match="more decimals than JPY"):
        Cart(currency="JPY", lines=(line(1, "10.5", "0"),), total_net="10.5", total_tax="0", total_gross="10.5")


def test_line_net_plus_tax_is_gross():
    with pytest.raises(ValidationError, match="net 10 \\+ tax 1 != gross 12"):
        CartLine(line_id="1", kind="item", unit_price="10", net_amount="10", tax_amount="1", gross_amount="12")


def test_reserve_request_cart_must_match_amount_and_key_is_required():
    cart = Cart(currency="EUR", lines=(line(1, "10.00", "0.00"),), total_net="10.00", total_tax="0.00", total_gross="10.00")
    with pytest.raises(ValidationError, match="differs from amount"):
        ReserveRequest(idempotency_key="k", transaction_id="t", amount=Money.of("11.00", "EUR"), cart=cart)
    with pytest.raises(ValidationError):
        ReserveRequest(idempotency_key="", transaction_id="t", amount=Money.of("1", "EUR"))
    req = ReserveRequest(idempotency_key="k", transaction_id="t", amount=Money.of("10.00", "EUR"), cart=cart)
    with pytest.raises(ValidationError):
        req.amount = Money.of("1", "EUR")  # frozen


def test_naive_datetimes_refused():
    with pytest.raises(ValidationError, match="timezone-aware"):
        ReservationResult(psp_reference="p", status="reserved", amount=Money.of("1", "EUR"),
                          captured=Money.of("0", "EUR"), expires_at=datetime(2026, 1, 1))


def test_payout_net_is_gross_minus_fee():
    with pytest.raises(ValidationError, match="gross 100 - fee 3 != net 98"):
        Payout(payout_id="po_1", currency="EUR", gross="100", fee="3", net="98", arrival_date="2026-01-01", status="paid")

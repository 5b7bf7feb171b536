"""Money: currency precision from ISO 4217, exact minor units, no floats, no silent rounding."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from payweave.hooks.money import (
    Money,
    MoneyError,
    UnknownCurrency,
    check_precision,
    currency_exponent,
    from_minor_units,
    round_money,
    to_minor_units,
)

CURRENCIES = ["EUR", "USD", "JPY", "KWD", "BHD", "CHF", "CLP", "TND", "ISK", "KRW"]


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("EUR", 2), ("usd", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3), ("CLP", 0), ("ISK", 0)],
)
def test_exponent_comes_from_iso_4217(currency, exponent):
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize("bad", ["XXX", "XAU", "EURO", "", "12A", "ZZZ"])
def test_unknown_or_unusable_currency_is_refused(bad):
    with pytest.raises(UnknownCurrency) as excinfo:
        currency_exponent(bad)
    assert excinfo.value.code == "unknown_currency"
    assert "currency" in excinfo.value.message or "minor unit" in excinfo.value.message


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("10.50", "EUR", 1050), ("500", "JPY", 500), ("1.234", "KWD", 1234), ("0.01", "USD", 1), ("-3.5", "EUR", -350)],
)
def test_minor_units(amount, currency, minor):
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(("amount", "currency"), [("10.505", "EUR"), ("1.5", "JPY"), ("0.0001", "KWD")])
def test_over_precise_amounts_are_refused_not_rounded(amount, currency):
    with pytest.raises(MoneyError) as excinfo:
        to_minor_units(Decimal(amount), currency)
    assert "more decimals than" in excinfo.value.message
    with pytest.raises(ValidationError, match="more decimals than"):
        Money(amount=amount, currency=currency)


def test_floats_are_refused():
    with pytest.raises(ValidationError, match="must not be floats"):
        Money(amount=10.5, currency="EUR")
    with pytest.raises(MoneyError):
        to_minor_units(10.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        from_minor_units(10.0, "EUR")  # type: ignore[arg-type]


def test_non_finite_and_garbage_refused():
    for bad in ["NaN", "Infinity", "abc", "1e5000x"]:
        with pytest.raises(ValidationError):
            Money(amount=bad, currency="EUR")


def test_money_arithmetic_keeps_currency_and_refuses_mixing():
    a = Money.of("10.00", "EUR")
    b = Money.of("2.50", "eur")
    assert (a - b) == Money.of("7.50", "EUR")
    assert (a + b).amount == Decimal("12.50")
    assert b < a and a >= b
    with pytest.raises(MoneyError) as excinfo:
        a + Money.of("1", "USD")
    assert excinfo.value.code == "currency_mismatch"


def test_json_round_trip_is_exact():
    m = Money.of("1234567890.123", "KWD")
    assert m.model_dump_json() == '{"amount":"1234567890.123","currency":"KWD"}'
    assert Money.model_validate_json(m.model_dump_json()) == m


def test_round_money_uses_bankers_rounding():
    assert round_money(Decimal("0.125"), "EUR") == Decimal("0.12")
    assert round_money(Decimal("0.135"), "EUR") == Decimal("0.14")
    assert round_money(Decimal("2.5"), "JPY") == Decimal("2")


@given(st.sampled_from(CURRENCIES), st.integers(min_value=-(10**15), max_value=10**15))
def test_minor_units_round_trip(currency, minor):
    amount = from_minor_units(minor, currency)
    assert to_minor_units(amount, currency) == minor
    assert check_precision(amount, currency) == amount
    assert Money(amount=amount, currency=currency).minor_units == minor


@given(
    st.sampled_from(CURRENCIES),
    st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=4),
)
def test_precision_check_accepts_exactly_the_representable(currency, amount):
    exponent = currency_exponent(currency)
    representable = amount == amount.quantize(Decimal(1).scaleb(-exponent))
    try:
        minor = to_minor_units(amount, currency)
    except MoneyError:
        assert not representable
    else:
        assert representable
        assert Decimal(minor).scaleb(-exponent) == amount


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20), st.sampled_from(CURRENCIES))
def test_sums_in_decimal_match_sums_in_minor_units(minors, currency):
    total = sum((Money.from_minor(m, currency) for m in minors[1:]), Money.from_minor(minors[0], currency))
    assert total.minor_units == sum(minors)


@given(st.sampled_from([*CURRENCIES, "eur", " jpy "]), st.integers(min_value=-(10**15), max_value=10**15))
def test_from_minor_is_the_validated_money(currency, minor):
    """Money.from_minor skips the second validation; it must make exactly what validation makes."""
    made = Money.from_minor(minor, currency)
    validated = Money(amount=from_minor_units(minor, currency), currency=currency)
    assert made == validated
    assert (made.amount, made.currency, str(made.amount)) == (validated.amount, validated.currency, str(validated.amount))
    assert made.model_dump(mode="json") == validated.model_dump(mode="json")
    assert made.model_fields_set == validated.model_fields_set
    assert Money.model_validate(made.model_dump(mode="json")) == made


def test_from_minor_refuses_what_validation_refuses():
    for minor, currency in [(1.5, "EUR"), (True, "EUR"), ("100", "EUR"), (100, "XXX"), (100, "EURO"), (100, "XAU")]:
        with pytest.raises(MoneyError):
            Money.from_minor(minor, currency)


def test_a_money_field_takes_the_money_as_it_is_and_checks_everything_else():
    from pydantic import BaseModel

    class Holder(BaseModel):
        money: Money

    money = Money.from_minor(1050, "EUR")
    assert Holder(money=money).money is money
    assert Holder(money={"amount": "10.5", "currency": "eur"}).money == money
    with pytest.raises(ValidationError, match="more decimals"):
        Holder(money={"amount": "10.505", "currency": "EUR"})
    with pytest.raises(ValidationError, match="more decimals"):
        Holder.model_validate({"money": {"amount": "1.5", "currency": "JPY"}})
    with pytest.raises(ValidationError):
        Holder(money={"amount": 1.5, "currency": "EUR"})

    class Tip(Money):  # a subclass is validated like any other input
        pass

    with pytest.raises(ValidationError, match="more decimals"):
        Tip(amount="0.001", currency="EUR")

"""Money: the one home for currency precision and minor-unit conversion.

Amounts are :class:`decimal.Decimal` in the core and in every model that crosses the plugin
boundary; on the wire a plugin converts with :func:`to_minor_units` / :func:`from_minor_units`,
which use each currency's own ISO 4217 exponent (JPY 0, EUR 2, KWD 3) from the maintained
``iso4217`` package. Floats are refused everywhere.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    PlainSerializer,
    field_validator,
    model_validator,
)

from .errors import PayweaveError


class MoneyError(PayweaveError, ValueError):
    """An amount or currency that cannot be represented (unknown currency, too many decimals,
    a float, a non-finite value)."""

    code = "invalid_amount"
    http_status = 422


class UnknownCurrency(MoneyError):
    code = "unknown_currency"


@lru_cache(maxsize=512)
def currency_exponent(currency: str) -> int:
    """Number of decimals of ``currency`` (ISO 4217 minor unit), e.g. JPY -> 0, KWD -> 3.

    Raises :class:`UnknownCurrency` for codes that are not active ISO 4217 currencies or have
    no minor unit (precious metals, testing codes).
    """
    import iso4217

    code = normalize_currency(currency)
    try:
        exponent = iso4217.Currency(code).exponent
    except (ValueError, KeyError):
        raise UnknownCurrency(f"'{currency}' is not an ISO 4217 currency code.", details={"currency": currency})
    if exponent is None:
        raise UnknownCurrency(
            f"'{code}' has no minor unit and cannot be used for payments.", details={"currency": code}
        )
    return int(exponent)


def normalize_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise UnknownCurrency(f"'{currency}' is not an ISO 4217 currency code.", details={"currency": str(currency)})
    return currency.strip().upper()


@lru_cache(maxsize=512)
def quantum(currency: str) -> Decimal:
    """The currency's smallest unit as a Decimal (EUR -> 0.01, JPY -> 1)."""
    return Decimal(1).scaleb(-currency_exponent(currency))


def to_decimal(value: Any) -> Decimal:
    """Convert ``value`` (Decimal, int or numeric string) to Decimal; floats are refused."""
    if isinstance(value, bool):
        raise MoneyError("An amount must be a number, not a boolean.")
    if isinstance(value, float):
        raise MoneyError("Amounts must not be floats; send them as strings or integers.", details={"value": repr(value)})
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"'{value}' is not a number.", details={"value": value})
    else:
        raise MoneyError(f"An amount must be a decimal number, not {type(value).__name__}.")
    if not result.is_finite():
        raise MoneyError("An amount must be a finite number.", details={"value": str(value)})
    return result


def check_precision(amount: Decimal, currency: str) -> Decimal:
    """Return ``amount`` unchanged in value, refusing more decimals than ``currency`` has."""
    exponent = currency_exponent(currency)
    normalized = amount.normalize() if amount != 0 else Decimal(0)
    if normalized.as_tuple().exponent < -exponent:  # type: ignore[operator]
        raise MoneyError(
            f"{amount} has more decimals than {normalize_currency(currency)} allows ({exponent}).",
            details={"amount": str(amount), "currency": normalize_currency(currency), "decimals": exponent},
        )
    return amount.quantize(quantum(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` to the currency's precision (banker's rounding), for computed values
    such as tax; input amounts are checked with :func:`check_precision` instead."""
    return to_decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_EVEN)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Exact integer minor units for the wire (10.50 EUR -> 1050, 500 JPY -> 500, 1.234 KWD -> 1234).

    Refuses amounts with more decimals than the currency has instead of rounding silently.
    """
    if type(amount) is Decimal and amount.is_finite():  # the common case, without the detours
        scaled = amount.scaleb(currency_exponent(currency))
        if scaled == scaled.to_integral_value():
            return int(scaled)
    checked = check_precision(to_decimal(amount), currency)
    return int(checked.scaleb(currency_exponent(currency)))


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Inverse of :func:`to_minor_units`."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"Minor units must be an integer, not {type(minor).__name__}.")
    return Decimal(minor).scaleb(-currency_exponent(currency)).quantize(quantum(currency))


def _decimal_in(value: Any) -> Decimal:
    return to_decimal(value)


#: A Decimal field that refuses floats and serialises to a JSON string (no precision loss).
DecimalStr = Annotated[Decimal, BeforeValidator(_decimal_in), PlainSerializer(lambda d: str(d), return_type=str, when_used="json")]


class Money(BaseModel):
    """An amount in one currency, validated against the currency's precision.

    ``Money(amount="10.50", currency="eur")`` -> ``Money(amount=Decimal('10.50'), currency='EUR')``.
    Negative amounts are allowed in the model (refund lines); operations check their own signs.
    """

    model_config = ConfigDict(frozen=True)

    amount: DecimalStr
    currency: str

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        code = normalize_currency(value)
        currency_exponent(code)
        return code

    @model_validator(mode="wrap")
    @classmethod
    def _precision(cls, value: Any, handler: ModelWrapValidatorHandler[Money]) -> Money:
        # a Money is immutable and was checked when it was made: a field of type Money takes it
        # as it is (an "after" validator would check its precision again in every model that
        # holds it, three times for a PSP event)
        if type(value) is Money:
            return value
        money = handler(value)
        object.__setattr__(money, "amount", check_precision(money.amount, money.currency))
        return money

    @classmethod
    def of(cls, amount: Any, currency: str) -> Money:
        return cls(amount=to_decimal(amount), currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        """The amount of ``minor`` units of ``currency`` (1050 EUR -> 10.50 EUR). Made without a
        second validation: :func:`from_minor_units` refuses what is not an integer or not a
        currency, and its result has exactly the currency's decimals."""
        amount = from_minor_units(minor, currency)
        if cls is not Money:
            return cls(amount=amount, currency=currency)
        return cls.model_construct(amount=amount, currency=normalize_currency(currency))

    @property
    def minor_units(self) -> int:
        return to_minor_units(self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(
                f"Cannot combine {self.currency} and {other.currency} amounts.",
                code="currency_mismatch",
                details={"currencies": [self.currency, other.currency]},
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __neg__(self) -> Money:
        return Money(amount=-self.amount, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

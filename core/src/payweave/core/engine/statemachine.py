"""The transaction state machine: amounts, derived status and the legality of each operation.

A transaction's money is a small ledger in minor units::

    authorized  reserved at the PSP (the amount of the authorization)
    captured    captured so far                 (never more than authorized)
    voided      released without capture        (void, or the rest of a final capture)
    expired     lapsed at the PSP uncaptured
    refunded    paid back cart-dependently      (refund)
    credited    paid back cart-independently    (credit)

    open        = authorized - captured - voided - expired     (what can still be captured)
    returned    = refunded + credited
    refundable  = captured - returned

The status is *derived* from the ledger (plus the phase for prepared / pending / failed), so it
can never disagree with the amounts::

    prepared -> pending -> reserved -> partly_captured -> captured -> partly_refunded -> refunded
                    \\-> failed     \\-> partly_voided -> voided         (partly_credited / credited)
                                    \\-> expired

Every check here raises a typed refusal naming the figures; nothing here touches the database
or the PSP. PSP capability checks go through ``PspCapabilities.require``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from payweave.core.errors import AmountNotAvailable, IllegalTransition
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.money import from_minor_units


class TxStatus(StrEnum):
    PREPARED = "prepared"
    PENDING = "pending"
    RESERVED = "reserved"
    PARTLY_VOIDED = "partly_voided"
    PARTLY_CAPTURED = "partly_captured"
    CAPTURED = "captured"
    PARTLY_REFUNDED = "partly_refunded"
    REFUNDED = "refunded"
    PARTLY_CREDITED = "partly_credited"
    CREDITED = "credited"
    VOIDED = "voided"
    EXPIRED = "expired"
    FAILED = "failed"


class Phase(StrEnum):
    """What the ledger cannot say by itself."""

    PREPARED = "prepared"
    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"


class OpKind(StrEnum):
    RESERVE = "reserve"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    CREDIT = "credit"
    CART_UPDATE = "cart_update"
    RENEW = "renew"
    IMPORT = "import"


@dataclass(frozen=True)
class Ledger:
    currency: str
    authorized: int = 0
    captured: int = 0
    voided: int = 0
    expired: int = 0
    refunded: int = 0
    credited: int = 0

    @property
    def open(self) -> int:
        return self.authorized - self.captured - self.voided - self.expired

    @property
    def returned(self) -> int:
        return self.refunded + self.credited

    @property
    def refundable(self) -> int:
        return self.captured - self.returned

    def money(self, minor: int) -> Decimal:
        return from_minor_units(minor, self.currency)

    def fmt(self, minor: int) -> str:
        return f"{self.money(minor)} {self.currency}"

    def check(self) -> None:
        """The invariants; a violation is a bug, never a user error."""
        values = (self.authorized, self.captured, self.voided, self.expired, self.refunded, self.credited)
        assert all(v >= 0 for v in values), f"negative amount in {self}"
        assert self.open >= 0, f"captured + voided + expired exceed authorized in {self}"
        assert self.refundable >= 0, f"refunded + credited exceed captured in {self}"

    def with_(self, **changes: int) -> Ledger:
        new = replace(self, **changes)
        new.check()
        return new


def derive_status(phase: Phase, ledger: Ledger) -> TxStatus:
    if phase is Phase.PREPARED:
        return TxStatus.PREPARED
    if phase is Phase.PENDING:
        return TxStatus.PENDING
    if phase is Phase.FAILED:
        return TxStatus.FAILED
    if ledger.returned > 0:
        full = ledger.returned >= ledger.captured and ledger.open == 0
        if ledger.credited > 0 and ledger.refunded == 0:
            return TxStatus.CREDITED if full else TxStatus.PARTLY_CREDITED
        return TxStatus.REFUNDED if full else TxStatus.PARTLY_REFUNDED
    if ledger.captured > 0:
        return TxStatus.CAPTURED if ledger.open == 0 else TxStatus.PARTLY_CAPTURED
    if ledger.open > 0:
        return TxStatus.PARTLY_VOIDED if ledger.voided > 0 else TxStatus.RESERVED
    if ledger.expired > 0:
        return TxStatus.EXPIRED
    return TxStatus.VOIDED


def _what(status: TxStatus) -> str:
    return status.value.replace("_", " ")


def check_reserve(status: TxStatus) -> None:
    if status is not TxStatus.PREPARED:
        raise IllegalTransition(
            f"The payment cannot be authorized: it is {_what(status)}, and only a prepared payment can be.",
            details={"status": status.value, "operation": "reserve"},
        )


def check_capture(status: TxStatus, ledger: Ledger, amount: int, caps: PspCapabilities, psp: str) -> bool:
    """Refuse an illegal capture; return whether it is final (no further capture follows)."""
    if status in (TxStatus.PREPARED, TxStatus.PENDING, TxStatus.FAILED):
        raise IllegalTransition(
            f"Nothing can be captured: the payment is {_what(status)}, not authorized.",
            details={"status": status.value, "operation": "capture"},
        )
    if amount <= 0:
        raise AmountNotAvailable(
            f"A capture must be a positive amount, not {ledger.fmt(amount)}.",
            details={"amount": str(ledger.money(amount))},
        )
    if ledger.open <= 0:
        raise IllegalTransition(
            f"Nothing is left to capture: the payment is {_what(status)} (authorized {ledger.fmt(ledger.authorized)}, "
            f"captured {ledger.fmt(ledger.captured)}).",
            details={"status": status.value, "operation": "capture"},
        )
    if amount > ledger.open:
        raise AmountNotAvailable(
            f"Cannot capture {ledger.fmt(amount)}: only {ledger.fmt(ledger.open)} is still reserved "
            f"(authorized {ledger.fmt(ledger.authorized)}, captured {ledger.fmt(ledger.captured)}, released "
            f"{ledger.fmt(ledger.voided + ledger.expired)}).",
            details={"amount": str(ledger.money(amount)), "capturable": str(ledger.money(ledger.open))},
        )
    caps.require(Feature.CAPTURE, psp=psp)
    if ledger.captured > 0:
        caps.require(Feature.MULTIPLE_CAPTURES, psp=psp)
    if amount < ledger.open:
        caps.require(Feature.PARTIAL_CAPTURE, psp=psp)
    return amount == ledger.open or not caps.declares(Feature.MULTIPLE_CAPTURES)


def check_void(status: TxStatus, ledger: Ledger, amount: int | None, caps: PspCapabilities, psp: str) -> int:
    """Refuse an illegal void; return the amount that will be released."""
    if status in (TxStatus.PREPARED, TxStatus.PENDING, TxStatus.FAILED) or ledger.open <= 0:
        raise IllegalTransition(
            f"Nothing can be voided: the payment is {_what(status)} with nothing reserved"
            + (f" (captured {ledger.fmt(ledger.captured)}; use a refund to pay money back)." if ledger.captured else "."),
            details={"status": status.value, "operation": "void"},
        )
    caps.require(Feature.VOID, psp=psp)
    if amount is None:
        return ledger.open
    if amount <= 0:
        raise AmountNotAvailable(f"A void must be a positive amount, not {ledger.fmt(amount)}.")
    if amount > ledger.open:
        raise AmountNotAvailable(
            f"Cannot void {ledger.fmt(amount)}: only {ledger.fmt(ledger.open)} is still reserved.",
            details={"amount": str(ledger.money(amount)), "voidable": str(ledger.money(ledger.open))},
        )
    if amount < ledger.open:
        caps.require(Feature.PARTIAL_VOID, psp=psp)
    return amount


def check_money_back(
    kind: OpKind, status: TxStatus, ledger: Ledger, amount: int, caps: PspCapabilities, psp: str
) -> None:
    """Refund (cart-dependent) or credit (cart-independent) of captured money."""
    word = "refunded" if kind is OpKind.REFUND else "credited"
    if ledger.captured <= 0:
        raise IllegalTransition(
            f"Nothing can be {word}: the payment is {_what(status)} and nothing was captured"
            + (" (void the reservation instead)." if ledger.open > 0 else "."),
            details={"status": status.value, "operation": kind.value},
        )
    if amount <= 0:
        raise AmountNotAvailable(f"A {kind.value} must be a positive amount, not {ledger.fmt(amount)}.")
    if amount > ledger.refundable:
        raise AmountNotAvailable(
            f"Cannot pay back {ledger.fmt(amount)}: only {ledger.fmt(ledger.refundable)} of the captured "
            f"{ledger.fmt(ledger.captured)} has not been paid back yet (refunded {ledger.fmt(ledger.refunded)}, "
            f"credited {ledger.fmt(ledger.credited)}).",
            details={"amount": str(ledger.money(amount)), "refundable": str(ledger.money(ledger.refundable))},
        )
    if kind is OpKind.REFUND:
        caps.require(Feature.REFUND, psp=psp)
        if amount < ledger.captured or ledger.returned > 0:
            caps.require(Feature.PARTIAL_REFUND, psp=psp)
    else:
        caps.require(Feature.CREDIT, psp=psp)


def phase_of(status: TxStatus | str) -> Phase:
    return {
        TxStatus.PREPARED: Phase.PREPARED,
        TxStatus.PENDING: Phase.PENDING,
        TxStatus.FAILED: Phase.FAILED,
    }.get(TxStatus(status), Phase.ACTIVE)


def check_cart_update(status: TxStatus, ledger: Ledger) -> None:
    if status not in (TxStatus.PREPARED, TxStatus.PENDING, TxStatus.RESERVED):
        raise IllegalTransition(
            f"The cart can no longer change: the payment is {_what(status)}.",
            details={"status": status.value, "operation": "cart_update"},
        )


_LEDGER_FIELDS = ("authorized", "captured", "voided", "expired", "refunded", "credited")


def ledger_of(row: Any) -> Ledger:
    """The ledger of a transaction row (its ``*_minor`` columns): the one reader of them."""
    return Ledger(row.currency, **{name: getattr(row, f"{name}_minor") for name in _LEDGER_FIELDS})


def store_ledger(row: Any, ledger: Ledger, phase: Phase) -> None:
    """Write ``ledger`` to a transaction row and derive its status (invariants checked): the one
    writer of the ``*_minor`` columns."""
    ledger.check()
    for name in _LEDGER_FIELDS:
        setattr(row, f"{name}_minor", getattr(ledger, name))
    row.status = derive_status(phase, ledger).value

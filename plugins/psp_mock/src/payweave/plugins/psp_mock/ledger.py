"""The mock PSP's own books: one :class:`MockLedger` per account key (``plugin:name``).

Everything the mock PSP "knows" lives here: payments with their reserved, captured, released,
refunded and credited amounts, every money movement, idempotency records, mandates, payment
links, balance transactions and payouts, the events it would send as webhooks, the fault queue
and the clock. Tests read it through :func:`ledger_for`::

    ledger = ledger_for(account)
    ledger.inject(Fault.TIMEOUT_AFTER, operation="capture")   # next capture applies, then times out
    ledger.count("capture")                                   # captures moved so far
    ledger.payment(ref).captured                              # Decimal
    ledger.advance(days=7)                                    # reservations expire

All amounts are :class:`~decimal.Decimal` in the payment's currency precision.
"""
from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from payweave.hooks.errors import InvalidRequest, PaymentDeclined, TemporarilyUnavailable
from payweave.hooks.models import Account, Cart, PaymentStatus, Payout, PayoutLine
from payweave.hooks.money import Money, from_minor_units, round_money, to_minor_units

from .clock import MockClock

ZERO = Decimal(0)


class Fault(StrEnum):
    """Deterministic failures queued per account (:meth:`MockLedger.inject`)."""

    TIMEOUT_AFTER = "timeout_after"
    """Apply the operation (money moves, the result is stored under the idempotency key), then
    raise :class:`TemporarilyUnavailable` as if the response was lost. A retry with the same
    key gets the stored result."""
    UNAVAILABLE = "unavailable"
    """Raise :class:`TemporarilyUnavailable` before anything happens."""
    DECLINE = "decline"
    """Raise :class:`PaymentDeclined` before anything happens (money-moving operations only)."""


#: Operations the fault queue can target (hook names without the ``psp_`` prefix).
OPERATIONS = (
    "reserve",
    "capture",
    "void",
    "refund",
    "credit",
    "update_cart",
    "create_payment_link",
    "charge_mandate",
    "renew_reservation",
    "get_payment",
    "list_payouts",
)
_DECLINABLE = frozenset(
    {"reserve", "capture", "refund", "credit", "update_cart", "charge_mandate", "renew_reservation"}
)
#: Money-movement kinds recorded in :attr:`MockLedger.operations`.
MOVE_KINDS = ("reserve", "capture", "void", "release", "refund", "credit", "expire")
"""``release`` is the remainder a final partial capture gives back; ``expire`` what lapsed."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass
class MockPayment:
    """One payment at the mock PSP.

    ``amount`` is the total authorized (changed by cart updates); of it, ``captured`` was
    captured, ``released`` given back by voids and final partial captures, and ``lapsed`` lost
    to expiry. ``remaining`` is what is still reserved.
    """

    reference: str
    currency: str
    amount: Decimal
    status: PaymentStatus
    created_at: datetime
    expires_at: datetime | None = None
    captured: Decimal = ZERO
    released: Decimal = ZERO
    lapsed: Decimal = ZERO
    refunded: Decimal = ZERO
    credited: Decimal = ZERO
    capture_count: int = 0
    cart: Cart | None = None
    customer_id: str | None = None
    link_id: str | None = None
    mandate_reference: str | None = None
    renewed_by: str | None = None
    renews: str | None = None
    capture_on_authorize: bool = False
    decline_code: str | None = None

    @property
    def remaining(self) -> Decimal:
        """Still reserved: authorized minus captured, released and lapsed."""
        return self.amount - self.captured - self.released - self.lapsed

    @property
    def refundable(self) -> Decimal:
        """Captured money not yet paid back (by refund or linked credit)."""
        return self.captured - self.refunded - self.credited

    @property
    def reserved_now(self) -> Decimal:
        """What the reservation stands at: authorized minus released and lapsed."""
        return self.amount - self.released - self.lapsed

    def money(self, amount: Decimal) -> Money:
        return Money(amount=amount, currency=self.currency)


@dataclass(frozen=True)
class Operation:
    """One money movement (or release) at the mock PSP."""

    kind: str
    payment_reference: str | None
    amount: Decimal
    currency: str
    operation_reference: str
    idempotency_key: str | None
    at: datetime


@dataclass
class MockMandate:
    reference: str
    customer_id: str
    outcome: str = "ok"
    """``ok``, ``decline`` (insufficient funds) or ``authentication_required``."""
    active: bool = True


@dataclass
class MockLink:
    link_id: str
    url: str
    payment_reference: str
    status: str  # open | completed | cancelled | expired
    expires_at: datetime
    capture: bool
    success_url: str
    error_url: str
    cancel_url: str


@dataclass
class BalanceTransaction:
    kind: str  # charge | refund | adjustment
    payment_reference: str | None
    currency: str
    gross: Decimal
    fee: Decimal
    created_at: datetime
    payout_id: str | None = None

    @property
    def net(self) -> Decimal:
        return self.gross - self.fee


@dataclass
class _Stored:
    fingerprint: str
    result: Any = None
    error: BaseException | None = None


@dataclass
class _QueuedFault:
    fault: Fault
    operation: str | None


@dataclass
class _PayoutRecord:
    payout: Payout
    created_at: datetime


class MockLedger:
    """The books of one mock PSP account. Thread-safe: every operation holds :attr:`lock`."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lock = threading.RLock()
        self.clock = MockClock()
        self.payments: dict[str, MockPayment] = {}
        self.operations: list[Operation] = []
        self.mandates: dict[str, MockMandate] = {}
        self.links: dict[str, MockLink] = {}
        self.balance: list[BalanceTransaction] = []
        self._payouts: list[_PayoutRecord] = []
        self.events: list[dict[str, Any]] = []
        self.delivered: set[str] = set()
        self.declines: int = 0
        #: ``(operation, idempotency_key)`` of every call that reached the "PSP" (after the
        #: capability checks): a refused operation never appears here.
        self.requests: list[tuple[str, str | None]] = []
        self._idempotency: dict[str, _Stored] = {}
        self._faults: deque[_QueuedFault] = deque()

    # ================================================================ test API: reading
    def payment(self, reference: str) -> MockPayment:
        with self.lock:
            try:
                return self.payments[reference]
            except KeyError:
                raise KeyError(f"the mock PSP has no payment {reference!r}") from None

    def count(self, kind: str, reference: str | None = None) -> int:
        """How many movements of ``kind`` (reserve, capture, void, refund, credit, expire)."""
        with self.lock:
            return sum(
                1 for op in self.operations if op.kind == kind and (reference is None or op.payment_reference == reference)
            )

    def total(self, kind: str, currency: str, reference: str | None = None) -> Decimal:
        """Sum of the movements of ``kind`` in ``currency``."""
        with self.lock:
            return sum(
                (
                    op.amount
                    for op in self.operations
                    if op.kind == kind and op.currency == currency and (reference is None or op.payment_reference == reference)
                ),
                ZERO,
            )

    def moves(self, reference: str) -> dict[str, int]:
        """``{"captures": n, "refunds": n, "voids": n, "credits": n}`` for one payment."""
        return {
            "captures": self.count("capture", reference),
            "refunds": self.count("refund", reference),
            "voids": self.count("void", reference),
            "credits": self.count("credit", reference),
        }

    def stats(self) -> dict[str, Any]:
        """A summary: counts per movement kind and the number of payments, declines, events."""
        with self.lock:
            return {
                "payments": len(self.payments),
                "declines": self.declines,
                "events": len(self.events),
                "payouts": len(self._payouts),
                **{f"{kind}s": self.count(kind) for kind in MOVE_KINDS},
            }

    def invariant_violations(self) -> list[str]:
        """Everything that would make these books wrong; empty when they are sound."""
        problems: list[str] = []
        with self.lock:
            for p in self.payments.values():
                parts = {
                    "captured": p.captured,
                    "released": p.released,
                    "lapsed": p.lapsed,
                    "refunded": p.refunded,
                    "credited": p.credited,
                }
                for name, value in parts.items():
                    if value < 0:
                        problems.append(f"{p.reference}: {name} {value} < 0")
                if p.captured + p.released + p.lapsed > p.amount:
                    problems.append(
                        f"{p.reference}: captured {p.captured} + released {p.released} + lapsed {p.lapsed} "
                        f"> authorized {p.amount}"
                    )
                if p.refunded + p.credited > p.captured:
                    problems.append(f"{p.reference}: refunded {p.refunded} + credited {p.credited} > captured {p.captured}")
                captured_ops = self.total("capture", p.currency, p.reference)
                if captured_ops != p.captured:
                    problems.append(f"{p.reference}: capture movements {captured_ops} != captured {p.captured}")
                refunded_ops = self.total("refund", p.currency, p.reference)
                if refunded_ops != p.refunded:
                    problems.append(f"{p.reference}: refund movements {refunded_ops} != refunded {p.refunded}")
        return problems

    def payouts(self) -> list[Payout]:
        with self.lock:
            return [r.payout for r in self._payouts]

    def events_for(self, reference: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["data"].get("payment") == reference]

    def last_event(self, raw_type: str, reference: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            for event in reversed(self.events):
                if event["type"] == raw_type and (reference is None or event["data"].get("payment") == reference):
                    return event
        return None

    def undelivered_events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["id"] not in self.delivered]

    # ================================================================ test API: acting
    def inject(self, fault: Fault | str, operation: str | None = None, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` calls of ``operation`` (None: any operation;
        a ``decline`` with None waits for the next money-moving call)."""
        fault = Fault(fault)
        if operation is not None and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
        if fault is Fault.DECLINE and operation is not None and operation not in _DECLINABLE:
            raise ValueError(f"{operation!r} cannot be declined")
        with self.lock:
            for _ in range(times):
                self._faults.append(_QueuedFault(fault, operation))

    def pending_faults(self) -> list[tuple[str, str | None]]:
        with self.lock:
            return [(q.fault.value, q.operation) for q in self._faults]

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def advance(self, seconds: float = 0, *, days: float = 0, hours: float = 0) -> datetime:
        """Move the PSP's clock forward and let what is due expire (emits ``*.expired`` events)."""
        now = self.clock.advance(timedelta(seconds=seconds, days=days, hours=hours))
        self.expire_due()
        return now

    def expire_due(self) -> list[str]:
        """Expire every reservation and link whose time has come; return their references."""
        expired: list[str] = []
        with self.lock:
            for payment in self.payments.values():
                if self.refresh(payment):
                    expired.append(payment.reference)
            now = self.clock.now()
            for link in self.links.values():
                if link.status == "open" and now >= link.expires_at:
                    link.status = "expired"
                    self.emit("link.expired", link_id=link.link_id, payment=link.payment_reference)
                    expired.append(link.link_id)
        return expired

    def create_mandate(self, customer_id: str, outcome: str = "ok") -> str:
        """Create a mandate (saved payment method) for ``customer_id``; ``outcome`` of its charges:
        ``ok``, ``decline`` or ``authentication_required``."""
        if outcome not in {"ok", "decline", "authentication_required"}:
            raise ValueError(f"unknown mandate outcome {outcome!r}")
        with self.lock:
            reference = new_id("mmd")
            self.mandates[reference] = MockMandate(reference, customer_id, outcome)
            return reference

    def revoke_mandate(self, reference: str) -> None:
        with self.lock:
            self.mandates[reference].active = False

    def complete_link(self, link_id: str, outcome: str = "paid") -> str | None:
        """Act as the customer on the hosted page of ``link_id``.

        ``paid``: the payment is authorized (or captured when the link asked to capture), and
        ``link.completed`` is emitted; returns the payment's reference. ``cancelled``: the
        customer left through the cancel URL; the link stays open; returns None.
        """
        with self.lock:
            link = self.links.get(link_id)
            if link is None:
                raise InvalidRequest(f"The mock PSP has no payment link {link_id!r}.", code="no_such_link")
            self.expire_due()
            if link.status != "open":
                raise InvalidRequest(f"Payment link {link_id} is {link.status}.", code="link_not_open")
            if outcome == "cancelled":
                return None
            if outcome != "paid":
                raise ValueError("outcome must be 'paid' or 'cancelled'")
            payment = self.payments[link.payment_reference]
            link.status = "completed"
            self.authorize_pending(payment.reference, capture=link.capture)
            self.emit(
                "link.completed",
                link_id=link.link_id,
                payment=payment.reference,
                amount_minor=to_minor_units(payment.amount, payment.currency),
                currency=payment.currency,
            )
            return payment.reference

    def authorize_pending(self, reference: str, *, capture: bool | None = None, key: str | None = None) -> MockPayment:
        """The customer finished authorizing a ``pending`` payment (3-D Secure, a hosted page).
        ``capture`` defaults to what the payment was created with (AutoCapture)."""
        with self.lock:
            payment = self.payment(reference)
            if capture is None:
                capture = payment.capture_on_authorize
            if payment.status is not PaymentStatus.PENDING:
                raise InvalidRequest(f"Payment {reference} is {payment.status.value}, not pending.", code="not_pending")
            payment.status = PaymentStatus.RESERVED
            self.record("reserve", payment, payment.amount, new_id("mauth"), key)
            if capture:
                self.apply_capture(payment, payment.amount, final=True, key=key)
            else:
                payment.expires_at = self._expiry_for(payment)
                self.emit_payment("payment.authorized", payment, payment.amount)
            return payment

    def run_payout(self, currency: str | None = None) -> list[Payout]:
        """Pay out every unpaid balance transaction (per currency with a positive net)."""
        made: list[Payout] = []
        with self.lock:
            now = self.clock.now()
            currencies = sorted({t.currency for t in self.balance if t.payout_id is None})
            for cur in currencies:
                if currency is not None and cur != currency:
                    continue
                txns = [t for t in self.balance if t.payout_id is None and t.currency == cur]
                gross = sum((t.gross for t in txns), ZERO)
                fee = sum((t.fee for t in txns), ZERO)
                if gross - fee <= 0:
                    continue
                payout_id = new_id("mpo")
                lines = tuple(
                    PayoutLine(psp_reference=t.payment_reference, kind=t.kind, gross=t.gross, fee=t.fee, net=t.net)  # type: ignore[arg-type]
                    for t in txns
                )
                payout = Payout(
                    payout_id=payout_id,
                    currency=cur,
                    gross=gross,
                    fee=fee,
                    net=gross - fee,
                    arrival_date=(now + timedelta(days=self._payout_delay_days)).date(),
                    status="paid",
                    lines=lines,
                )
                for t in txns:
                    t.payout_id = payout_id
                self._payouts.append(_PayoutRecord(payout, now))
                self.emit(
                    "payout.paid",
                    payout_id=payout_id,
                    currency=cur,
                    amount_minor=to_minor_units(payout.net, cur),
                )
                made.append(payout)
        return made

    def payouts_since(self, since: datetime | None) -> list[Payout]:
        with self.lock:
            return [r.payout for r in self._payouts if since is None or r.created_at > since]

    # ================================================================ internals used by the plugin
    _payout_delay_days: int = 2
    fee_percent: Decimal = Decimal("1.4")
    fee_fixed_minor: int = 25
    reservation_validity: timedelta | None = None

    def configure(self, *, fee_percent: Decimal, fee_fixed_minor: int, payout_delay_days: int, validity: timedelta | None) -> None:
        """Take the account's current settings (called by the plugin on every operation)."""
        self.fee_percent = fee_percent
        self.fee_fixed_minor = fee_fixed_minor
        self._payout_delay_days = payout_delay_days
        self.reservation_validity = validity

    def _expiry_for(self, payment: MockPayment) -> datetime | None:
        if self.reservation_validity is None:
            return None
        return self.clock.now() + self.reservation_validity

    def pop_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for queued in list(self._faults):
                if queued.operation not in (None, operation):
                    continue
                if queued.fault is Fault.DECLINE and operation not in _DECLINABLE:
                    continue
                self._faults.remove(queued)
                return queued.fault
        return None

    def idempotent(
        self,
        operation: str,
        key: str,
        fingerprint: str,
        check: Any,
        apply: Any,
        *,
        fault: Fault | None = None,
    ) -> Any:
        """Run ``check()`` then ``apply()`` once per idempotency key, honouring the fault queue.

        Same key and same request: the first outcome again (a result, or the same decline),
        without checking or applying anything. Same key, different request:
        :class:`InvalidRequest`. Refusals raised by ``check`` (NotSupported, InvalidRequest)
        are not stored, like Stripe's validation errors: the caller may correct and resend.
        ``fault`` (from request metadata) replaces the queue for this one call.
        """
        with self.lock:
            stored = self._idempotency.get(key)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise InvalidRequest(
                        f"Idempotency key {key!r} was already used for a different request.",
                        code="idempotency_key_reused",
                        details={"idempotency_key": key},
                    )
                if stored.error is not None:
                    raise stored.error
                return stored.result
            checked = check()
            self.requests.append((operation, key))
            fault = fault or self.pop_fault(operation)
            if fault is Fault.UNAVAILABLE:
                raise TemporarilyUnavailable(f"The mock PSP is unavailable ({operation}); try again with the same key.")
            if fault is Fault.DECLINE:
                self.declines += 1
                error = PaymentDeclined("The mock PSP declined the operation.", decline_code="do_not_honor")
                self._idempotency[key] = _Stored(fingerprint, error=error)
                raise error
            try:
                result = apply(checked)
            except PaymentDeclined as exc:
                self._idempotency[key] = _Stored(fingerprint, error=exc)
                raise
            self._idempotency[key] = _Stored(fingerprint, result=result)
            if fault is Fault.TIMEOUT_AFTER:
                raise TemporarilyUnavailable(
                    f"The mock PSP did not answer in time ({operation}); the outcome is unknown."
                )
            return result

    def plain_call(self, operation: str) -> None:
        """A call without an idempotency key (lookups): log it and honour the fault queue."""
        with self.lock:
            self.requests.append((operation, None))
            fault = self.pop_fault(operation)
        if fault in (Fault.UNAVAILABLE, Fault.TIMEOUT_AFTER):
            raise TemporarilyUnavailable(f"The mock PSP is unavailable ({operation}).")

    def refresh(self, payment: MockPayment) -> bool:
        """Expire ``payment`` if its reservation ran out; True when it expired just now."""
        if payment.expires_at is None or payment.remaining <= 0:
            return False
        if payment.status not in (PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED):
            return False
        if self.clock.now() < payment.expires_at:
            return False
        lapsed = payment.remaining
        payment.lapsed += lapsed
        payment.status = PaymentStatus.EXPIRED if payment.captured == 0 else PaymentStatus.CAPTURED
        self.record("expire", payment, lapsed, new_id("mexp"), None)
        self.emit_payment("payment.expired", payment, lapsed)
        return True

    def record(self, kind: str, payment: MockPayment | None, amount: Decimal, op_ref: str, key: str | None, *, currency: str | None = None) -> Operation:
        op = Operation(
            kind=kind,
            payment_reference=payment.reference if payment else None,
            amount=amount,
            currency=payment.currency if payment else str(currency),
            operation_reference=op_ref,
            idempotency_key=key,
            at=self.clock.now(),
        )
        self.operations.append(op)
        return op

    def fee_for(self, gross: Decimal, currency: str) -> Decimal:
        variable = round_money(gross * self.fee_percent / Decimal(100), currency)
        return variable + from_minor_units(self.fee_fixed_minor, currency)

    def apply_capture(self, payment: MockPayment, amount: Decimal, *, final: bool, key: str | None) -> Operation:
        """Move ``amount`` from reserved to captured (checks done by the caller)."""
        payment.captured += amount
        payment.capture_count += 1
        op = self.record("capture", payment, amount, new_id("mcap"), key)
        if final and payment.remaining > 0:
            released = payment.remaining
            payment.released += released
            self.record("release", payment, released, new_id("mrel"), key)
        payment.status = PaymentStatus.CAPTURED if payment.remaining == 0 else PaymentStatus.PARTLY_CAPTURED
        payment.expires_at = payment.expires_at if payment.remaining > 0 else None
        self.balance.append(
            BalanceTransaction("charge", payment.reference, payment.currency, amount, self.fee_for(amount, payment.currency), self.clock.now())
        )
        self.emit_payment("payment.captured", payment, amount)
        return op

    def payment_totals(self, payment: MockPayment) -> dict[str, Any]:
        return {
            "payment": payment.reference,
            "currency": payment.currency,
            "status": payment.status.value,
            "total_captured_minor": to_minor_units(payment.captured, payment.currency),
            "total_refunded_minor": to_minor_units(payment.refunded + payment.credited, payment.currency),
        }

    def emit_payment(self, raw_type: str, payment: MockPayment, amount: Decimal | None, **extra: Any) -> dict[str, Any]:
        data = self.payment_totals(payment)
        if amount is not None:
            data["amount_minor"] = to_minor_units(amount, payment.currency)
        if payment.link_id:
            data.setdefault("link_id", payment.link_id)
        data.update(extra)
        return self.emit(raw_type, **data)

    def emit(self, raw_type: str, **data: Any) -> dict[str, Any]:
        event = {
            "id": new_id("mevt"),
            "type": raw_type,
            "created": int(self.clock.now().timestamp()),
            "livemode": False,
            "data": data,
        }
        self.events.append(event)
        return event

    def __iter__(self) -> Iterator[MockPayment]:
        with self.lock:
            return iter(list(self.payments.values()))


# ==================================================================== registry
_ledgers: dict[str, MockLedger] = {}
_registry_lock = threading.Lock()


def ledger_for(account: Account | str) -> MockLedger:
    """The ledger shared by every call for ``account`` (or an account key ``"psp_mock:name"``)."""
    key = account if isinstance(account, str) else account.key
    with _registry_lock:
        ledger = _ledgers.get(key)
        if ledger is None:
            ledger = _ledgers[key] = MockLedger(key)
        return ledger


def reset_ledger(account: Account | str) -> MockLedger:
    """Forget everything the mock PSP knows for ``account``; return the fresh ledger."""
    key = account if isinstance(account, str) else account.key
    with _registry_lock:
        _ledgers.pop(key, None)
    return ledger_for(key)


def reset_ledgers() -> None:
    """Forget every account's ledger (test isolation)."""
    with _registry_lock:
        _ledgers.clear()

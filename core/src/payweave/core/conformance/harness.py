"""The object suite tests receive as the ``payweave`` fixture.

It holds the plugin loaded through the real :class:`~payweave.core.plugins.PluginManager` (by
its entry-point name), the :class:`~payweave.core.plugins.PspClient` the runtime uses, the
plugin's :class:`~payweave.hooks.conformance.ConformanceEnvironment`, the account and the
capability model, plus small builders so each test reads as the scenario it proves.
"""
from __future__ import annotations

import contextlib
import itertools
import secrets as _secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from payweave.core.plugins import PluginManager, PspClient
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.conformance import ConformanceEnvironment
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    Cart,
    CartLine,
    CartUpdateRequest,
    CreditRequest,
    Customer,
    LineKind,
    MandateChargeRequest,
    OperationResult,
    PaymentLinkRequest,
    PaymentLinkResult,
    PaymentStatus,
    RefundRequest,
    RenewalResult,
    RenewReservationRequest,
    ReservationResult,
    ReserveRequest,
    VoidRequest,
)
from payweave.hooks.money import Money, currency_exponent, quantum

from .requirements import NotApplicable, Requirements, WrittenReason, requirement_of


@dataclass
class Expected:
    """What :meth:`Harness.expect` caught."""

    error: PayweaveError | None = None


@dataclass
class Harness:
    plugin: str
    manager: PluginManager
    env: ConformanceEnvironment
    account: Account
    strict: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.psp: PspClient = self.manager.psp(self.plugin)
        self.caps: PspCapabilities = self.psp.capabilities(self.account)
        reasons = getattr(self.env, "skip_reasons", None) or {}
        self.requirements = Requirements(self.plugin, self.caps, {str(k): str(v) for k, v in dict(reasons).items()})
        self.currency = self._pick_currency()
        self._run = _secrets.token_hex(4)
        self._counter = itertools.count(1)
        self.customer = Customer(
            customer_id=f"conformance-{self._run}",
            number="C-CONF",
            name="Conformance Customer",
            email="conformance@example.com",
        )

    # ------------------------------------------------------------------ gating
    def gate(self, item: pytest.Item) -> None:
        """Skip ``item`` before it runs when its requirement is closed, or when the plugin wrote
        a reason for it."""
        requirement = requirement_of(item)
        if requirement is None:
            return
        closed = self.requirements.closed_because(requirement)
        if closed is not None:
            raise NotApplicable(closed)
        function = getattr(item, "originalname", item.name)
        cls = getattr(item, "cls", None)
        names = [f"{cls.__name__}::{function}" if cls else function, function, item.name]
        written = self.requirements.written_reason(requirement, names)
        if written is not None:
            key, reason = written
            raise WrittenReason(f"{reason} (skip_reasons[{key!r}])")

    def declares(self, feature: Feature) -> bool:
        return self.caps.declares(feature)

    # ------------------------------------------------------------------ environment
    def env_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the environment; a method it cannot support skips the test with its reason
        (a written reason when the plugin's own override raised ``NotImplementedError(reason)``)."""
        try:
            return getattr(self.env, method)(*args, **kwargs)
        except NotImplementedError as exc:
            reason = str(exc).strip()
            own = getattr(type(self.env), method, None) is not getattr(ConformanceEnvironment, method, None)
            if own and reason:
                raise WrittenReason(f"{reason} ({type(self.env).__name__}.{method})") from None
            raise pytest.skip.Exception(
                f"the conformance environment cannot {method.replace('_', ' ')}: {reason or 'not implemented'}"
            ) from None

    def can(self, method: str) -> bool:
        """Whether the environment overrides ``method`` at all (without calling it)."""
        return getattr(type(self.env), method, None) is not getattr(ConformanceEnvironment, method, None)

    def moves(self, psp_reference: str) -> dict[str, int] | None:
        """The PSP's own count of money movements for a payment, or None if not observable."""
        try:
            return self.env.ledger_moves(psp_reference)
        except NotImplementedError:
            return None

    def secrets(self) -> list[str]:
        found = {str(s) for s in (getattr(self.env, "secrets", ()) or ()) if s}
        if self.account.settings is not None:
            found |= set(_secret_values(self.account.settings))
        return sorted(s for s in found if len(s) >= 4)

    # ------------------------------------------------------------------ money and carts
    def _pick_currency(self) -> str:
        accepted = self.caps.currencies
        if accepted is None or "EUR" in accepted:
            return "EUR"
        two = sorted(c for c in accepted if currency_exponent(c) == 2)
        return two[0] if two else sorted(accepted)[0]

    def money(self, value: str | int | Decimal, currency: str | None = None) -> Money:
        return Money.of(value, currency or self.currency)

    def smallest(self, currency: str | None = None) -> Money:
        """One minor unit (0.01 EUR, 1 JPY, 0.001 KWD)."""
        cur = currency or self.currency
        return Money(amount=quantum(cur), currency=cur)

    def plus_smallest(self, value: str, currency: str | None = None) -> Money:
        return self.money(value, currency) + self.smallest(currency)

    def cart(self, total: str | Decimal | Money, currency: str | None = None, lines: int = 2) -> Cart:
        """A cart whose lines (items with 20 % tax included in gross) sum exactly to ``total``."""
        amount = total if isinstance(total, Money) else self.money(total, currency)
        cur = amount.currency
        unit = quantum(cur)
        base = (amount.amount / lines).quantize(unit, rounding=ROUND_DOWN)
        grosses = [base] * (lines - 1) + [amount.amount - base * (lines - 1)]
        built = []
        for i, gross in enumerate(grosses, start=1):
            net = (gross / Decimal("1.2")).quantize(unit, rounding=ROUND_DOWN)
            built.append(
                CartLine(
                    line_id=str(i), kind=LineKind.ITEM, number=f"ITEM-{i}", description=f"Conformance item {i}",
                    unit_price=net, net_amount=net, tax_rate=Decimal(20), tax_amount=gross - net, gross_amount=gross,
                )
            )
        return Cart(
            currency=cur,
            lines=tuple(built),
            total_net=sum((line.net_amount for line in built), Decimal(0)),
            total_tax=sum((line.tax_amount for line in built), Decimal(0)),
            total_gross=amount.amount,
        )

    # ------------------------------------------------------------------ ids
    def key(self, step: str = "op") -> str:
        return f"conformance-{self._run}-{next(self._counter)}-{step}"

    def unknown_reference(self) -> str:
        return f"unknown_{_secrets.token_hex(8)}"

    # ------------------------------------------------------------------ requests
    def reserve_request(
        self,
        amount: str | Decimal = "10.00",
        *,
        currency: str | None = None,
        capture: bool = False,
        cart: bool = True,
        token: str | None | type[Ellipsis] = ...,  # type: ignore[valid-type]
        key: str | None = None,
    ) -> ReserveRequest:
        money = self.money(amount, currency)
        if token is ...:
            token = self.env_call("approve_token")
        return ReserveRequest(
            idempotency_key=key or self.key("reserve"),
            transaction_id=f"conformance-{self._run}",
            amount=money,
            cart=self.cart(money) if cart else None,
            capture=capture,
            customer=self.customer,
            reference=f"CONF-{self._run}",
            payment_method_token=token,  # type: ignore[arg-type]
        )

    def reserve(self, amount: str | Decimal = "10.00", **kw: Any) -> ReservationResult:
        return self.psp.reserve(self.account, self.reserve_request(amount, **kw))

    def reserved(self, amount: str | Decimal = "10.00", currency: str | None = None) -> ReservationResult:
        """An authorized, uncaptured reservation (needs ``reserve``)."""
        result = self.reserve(amount, currency=currency)
        assert result.status is PaymentStatus.RESERVED, (
            f"reserve with the approving token returned status {result.status.value!r}, not 'reserved'"
        )
        return result

    def captured(self, amount: str | Decimal = "10.00", currency: str | None = None) -> str:
        """A payment whose whole ``amount`` is captured, by reserve + capture or AutoCapture."""
        if self.declares(Feature.CAPTURE):
            ref = self.reserved(amount, currency).psp_reference
            self.capture(ref, amount, currency=currency)
            return ref
        result = self.reserve(amount, currency=currency, capture=True)
        assert result.status is PaymentStatus.CAPTURED, f"AutoCapture returned status {result.status.value!r}"
        return result.psp_reference

    def capture_request(self, ref: str, amount: str | Decimal | Money, *, final: bool = True, currency: str | None = None, key: str | None = None) -> CaptureRequest:
        money = amount if isinstance(amount, Money) else self.money(amount, currency)
        return CaptureRequest(
            idempotency_key=key or self.key("capture"), transaction_id=f"conformance-{self._run}",
            psp_reference=ref, amount=money, final=final,
        )

    def capture(self, ref: str, amount: str | Decimal | Money, **kw: Any) -> OperationResult:
        return self.psp.capture(self.account, self.capture_request(ref, amount, **kw))

    def void(self, ref: str, amount: str | Decimal | Money | None = None, currency: str | None = None) -> OperationResult:
        money = amount if isinstance(amount, Money) or amount is None else self.money(amount, currency)
        return self.psp.void(
            self.account,
            VoidRequest(idempotency_key=self.key("void"), transaction_id=f"conformance-{self._run}", psp_reference=ref, amount=money, reason="requested_by_customer"),
        )

    def refund_request(self, ref: str, amount: str | Decimal | Money, currency: str | None = None) -> RefundRequest:
        money = amount if isinstance(amount, Money) else self.money(amount, currency)
        return RefundRequest(
            idempotency_key=self.key("refund"), transaction_id=f"conformance-{self._run}", psp_reference=ref, amount=money,
            reason="requested_by_customer",
        )

    def refund(self, ref: str, amount: str | Decimal | Money, currency: str | None = None) -> OperationResult:
        return self.psp.refund(self.account, self.refund_request(ref, amount, currency))

    def credit(self, ref: str | None, amount: str | Decimal | Money) -> OperationResult:
        money = amount if isinstance(amount, Money) else self.money(amount)
        return self.psp.credit(
            self.account,
            CreditRequest(idempotency_key=self.key("credit"), transaction_id=f"conformance-{self._run}", psp_reference=ref, amount=money, customer=self.customer, reason="requested_by_customer"),
        )

    def update_cart(self, ref: str, stage: str, total: str | Decimal) -> ReservationResult:
        return self.psp.update_cart(
            self.account,
            CartUpdateRequest(idempotency_key=self.key("cart"), transaction_id=f"conformance-{self._run}", psp_reference=ref, stage=stage, cart=self.cart(total)),  # type: ignore[arg-type]
        )

    def create_link(self, amount: str | Decimal = "25.00", *, capture: bool | None = None) -> PaymentLinkResult:
        """A payment link; it captures on payment when the plugin cannot reserve (AutoCapture only)."""
        money = self.money(amount)
        if capture is None:
            capture = not self.declares(Feature.RESERVE)
        return self.psp.create_payment_link(
            self.account,
            PaymentLinkRequest(
                idempotency_key=self.key("link"), transaction_id=f"conformance-{self._run}", amount=money, cart=self.cart(money),
                customer=self.customer, reference=f"CONF-{self._run}",
                success_url="https://merchant.example/payweave/success", error_url="https://merchant.example/payweave/error",
                cancel_url="https://merchant.example/payweave/cancel", capture=capture,
            ),
        )

    def charge_mandate(self, mandate: str, amount: str | Decimal = "15.00") -> ReservationResult:
        money = self.money(amount)
        return self.psp.charge_mandate(
            self.account,
            MandateChargeRequest(idempotency_key=self.key("mandate"), transaction_id=f"conformance-{self._run}", mandate_reference=mandate, customer=self.customer, amount=money, cart=self.cart(money), reference=f"CONF-{self._run}"),
        )

    def renew(self, ref: str, amount: str | Decimal = "10.00") -> RenewalResult:
        money = self.money(amount)
        return self.psp.renew_reservation(
            self.account,
            RenewReservationRequest(idempotency_key=self.key("renew"), transaction_id=f"conformance-{self._run}", psp_reference=ref, amount=money, cart=self.cart(money)),
        )

    def prepared_payment(self, amount: str | Decimal = "10.00") -> str:
        """A payment the customer has not authorized yet: via the environment's pending token,
        else via a payment link (when declared and it names its payment at creation)."""
        if self.can("pending_token"):
            token = self.env_call("pending_token")
            result = self.reserve(amount, token=token, capture=not self.declares(Feature.RESERVE))
            assert result.status is PaymentStatus.PENDING, (
                f"reserve with the environment's pending token returned {result.status.value!r}, not 'pending'"
            )
            return result.psp_reference
        if self.declares(Feature.PAY_BY_LINK):
            link = self.create_link(amount)
            if link.psp_reference:
                return link.psp_reference
            raise pytest.skip.Exception(
                "the payment link names no payment at creation and the environment has no pending_token(), so "
                "there is no prepared payment whose cart could change"
            )
        return self.env_call("pending_token")  # raises the environment's skip

    # ------------------------------------------------------------------ assertions
    @contextlib.contextmanager
    def expect(self, *errors: type[PayweaveError], what: str = "the call") -> Iterator[Expected]:
        """Assert that the block raises one of the contract's typed ``errors``."""
        caught = Expected()
        names = " or ".join(e.__name__ for e in errors)
        try:
            yield caught
        except errors as exc:
            caught.error = exc
            return
        except Exception as exc:  # a different error is a contract violation: say which
            pytest.fail(f"{what} should raise {names}; it raised {type(exc).__name__}: {exc}", pytrace=False)
        pytest.fail(f"{what} should raise {names}; it succeeded", pytrace=False)

    def assert_moves(self, ref: str, **expected: int) -> None:
        """Check the PSP's own movement counts where the environment can read them."""
        moves = self.moves(ref)
        if moves is None:
            return
        actual = {k: moves.get(k, 0) for k in expected}
        assert actual == expected, f"the PSP recorded {actual} for {ref}, expected {expected}"


def _secret_values(model: BaseModel) -> Iterator[str]:
    for value in model.__dict__.values():
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secret_values(value)

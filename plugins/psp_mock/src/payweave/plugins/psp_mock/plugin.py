"""The psp_mock plugin: hook implementations over the in-process ledger.

Every hook first refuses what the account's declared capabilities exclude, with
:meth:`PspCapabilities.require` (the contract's one rule), then runs the operation through the
ledger's idempotency record. Deterministic triggers, per call:

* ``payment_method_token`` (reserve): ``"decline"`` / ``"decline_<code>"`` declines with that
  decline code; ``"requires_action"`` leaves the payment ``pending`` (the customer must act;
  ``ledger.authorize_pending(ref)`` plays the customer); anything else approves.
* ``metadata["psp_mock_outcome"]`` (reserve): same vocabulary as the token.
* ``metadata["psp_mock_fault"]`` (reserve): ``timeout_after`` / ``unavailable`` / ``decline``
  for this call only (see :class:`~payweave.plugins.psp_mock.ledger.Fault`).
* the per-account fault queue, for every operation: ``ledger_for(account).inject(...)``.
* ``api_key = "sk_mock_invalid"``: every operation raises ``AuthenticationFailed``.
* mandates created with an outcome (``ledger.create_mandate(customer_id, "decline")``).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from pydantic import BaseModel

from payweave.hooks import hookimpl
from payweave.hooks.capabilities import Feature, PspCapabilities, RenewalStyle
from payweave.hooks.errors import (
    AuthenticationFailed,
    ConfigurationError,
    InvalidRequest,
    PaymentDeclined,
    RemoteNotFound,
)
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    CartUpdateRequest,
    CreditRequest,
    MandateChargeRequest,
    OperationResult,
    OperationStatus,
    PaymentLinkRequest,
    PaymentLinkResult,
    PaymentLookup,
    PaymentStatus,
    Payout,
    PluginInfo,
    PluginKind,
    PspEvent,
    RefundRequest,
    RenewalResult,
    RenewReservationRequest,
    ReservationResult,
    ReserveRequest,
    VoidRequest,
    WebhookRequest,
)
from payweave.hooks.money import Money

from . import webhooks
from .ledger import BalanceTransaction, Fault, MockLedger, MockLink, MockPayment, ledger_for, new_id
from .settings import MockPspSettings

NAME = "psp_mock"
ZERO = Decimal(0)
log = structlog.get_logger("payweave.plugins.psp_mock")


# ==================================================================== helpers
def settings_of(account: Account) -> MockPspSettings:
    settings = account.settings
    if settings is None:
        return MockPspSettings()
    if not isinstance(settings, MockPspSettings):
        raise ConfigurationError(
            f"Account {account.name!r} of psp_mock has settings of type {type(settings).__name__}, "
            "not MockPspSettings.",
            details={"account": account.name},
        )
    return settings


def _open(account: Account) -> tuple[MockPspSettings, PspCapabilities, MockLedger]:
    settings = settings_of(account)
    if settings.api_key.get_secret_value() == "sk_mock_invalid":
        raise AuthenticationFailed("The mock PSP refused the API key of this account.")
    caps = settings.capabilities()
    ledger = ledger_for(account)
    ledger.configure(
        fee_percent=settings.fee_percent,
        fee_fixed_minor=settings.fee_fixed_minor,
        payout_delay_days=settings.payout_delay_days,
        validity=caps.reservation_validity,
    )
    return settings, caps, ledger


def _fingerprint(operation: str, request: BaseModel) -> str:
    return json.dumps({"op": operation, "request": request.model_dump(mode="json")}, sort_keys=True)


def _positive(amount: Money, what: str = "amount") -> None:
    if amount.amount <= 0:
        raise InvalidRequest(f"The {what} must be greater than zero, not {amount}.", code="invalid_amount")


def _payment(ledger: MockLedger, reference: str) -> MockPayment:
    payment = ledger.payments.get(reference)
    if payment is None:
        raise InvalidRequest(f"The mock PSP has no payment {reference!r}.", code="no_such_payment")
    return payment


def _same_currency(payment: MockPayment, amount: Money) -> None:
    if amount.currency != payment.currency:
        raise InvalidRequest(
            f"Payment {payment.reference} is in {payment.currency}, not {amount.currency}.",
            code="currency_mismatch",
        )


def _reservation(payment: MockPayment, operation_reference: str | None = None) -> ReservationResult:
    return ReservationResult(
        psp_reference=payment.reference,
        status=payment.status,
        amount=payment.money(payment.reserved_now),
        captured=payment.money(payment.captured),
        expires_at=payment.expires_at,
        operation_reference=operation_reference,
        raw_status=payment.status.value,
    )


def _outcome(request: ReserveRequest) -> tuple[str, str | None]:
    """("approve" | "decline" | "pending", decline_code) from the token or metadata."""
    for source in (request.metadata.get("psp_mock_outcome"), request.payment_method_token):
        if not source:
            continue
        if source == "requires_action":
            return "pending", None
        if source.startswith("decline"):
            code = source[len("decline_"):] if source.startswith("decline_") else "card_declined"
            return "decline", code or "card_declined"
    return "approve", None


def _forced_fault(metadata: dict[str, str]) -> Fault | None:
    value = metadata.get("psp_mock_fault")
    if not value:
        return None
    try:
        return Fault(value)
    except ValueError:
        raise InvalidRequest(f"Unknown psp_mock_fault {value!r}.", code="invalid_metadata") from None


def _trace(operation: str, account: Account, **fields: Any) -> None:
    log.debug("psp_mock.call", operation=operation, account=account.key, **fields)


# ==================================================================== identity
@hookimpl
def payweave_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        kind=PluginKind.PSP,
        title="Mock PSP (in-process, configurable capabilities)",
        settings_model=MockPspSettings,
    )


@hookimpl
def psp_capabilities(account: Account) -> PspCapabilities:
    return settings_of(account).capabilities()


# ==================================================================== reservations
@hookimpl
def psp_reserve(account: Account, request: ReserveRequest) -> ReservationResult:
    settings, caps, ledger = _open(account)
    caps.require(Feature.AUTO_CAPTURE if request.capture else Feature.RESERVE, psp=NAME)
    if request.cart is None:
        caps.require(Feature.NO_CART, psp=NAME)
    caps.require_currency(request.amount.currency, psp=NAME)
    _positive(request.amount)
    outcome, decline_code = _outcome(request)
    _trace("reserve", account, key=request.idempotency_key, amount=str(request.amount), capture=request.capture)

    def apply(_: None) -> ReservationResult:
        payment = MockPayment(
            reference=new_id("mpay"),
            currency=request.amount.currency,
            amount=request.amount.amount,
            status=PaymentStatus.PENDING,
            created_at=ledger.clock.now(),
            cart=request.cart,
            customer_id=request.customer.customer_id if request.customer else None,
            capture_on_authorize=request.capture,
        )
        ledger.payments[payment.reference] = payment
        if outcome == "decline":
            payment.status = PaymentStatus.FAILED
            payment.decline_code = decline_code
            ledger.declines += 1
            ledger.emit_payment("payment.failed", payment, payment.amount, decline_code=decline_code)
            raise PaymentDeclined(
                "The mock PSP declined the payment.",
                decline_code=decline_code,
                details={"psp_reference": payment.reference},
            )
        if outcome == "pending":
            ledger.emit_payment("payment.requires_action", payment, payment.amount)
            return _reservation(payment)
        ledger.authorize_pending(payment.reference, capture=request.capture, key=request.idempotency_key)
        capture_ref = next(
            (op.operation_reference for op in reversed(ledger.operations) if op.kind == "capture" and op.payment_reference == payment.reference),
            None,
        )
        return _reservation(payment, capture_ref)

    return ledger.idempotent(
        "reserve",
        request.idempotency_key,
        _fingerprint("reserve", request),
        lambda: None,
        apply,
        fault=_forced_fault(request.metadata),
    )


@hookimpl
def psp_capture(account: Account, request: CaptureRequest) -> OperationResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.CAPTURE, psp=NAME)
    _positive(request.amount)
    _trace("capture", account, key=request.idempotency_key, reference=request.psp_reference, amount=str(request.amount))

    def check() -> MockPayment:
        payment = _payment(ledger, request.psp_reference)
        _same_currency(payment, request.amount)
        if payment.capture_count >= 1:  # the contract: a second capture needs manual_multiple
            caps.require(Feature.MULTIPLE_CAPTURES, psp=NAME)
        ledger.refresh(payment)
        if payment.status is PaymentStatus.EXPIRED:
            raise InvalidRequest(f"The reservation {payment.reference} has expired.", code="reservation_expired")
        if payment.status not in (PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED) or payment.remaining <= 0:
            raise InvalidRequest(
                f"Payment {payment.reference} is {payment.status.value}; nothing is left to capture.",
                code="not_capturable",
            )
        if request.amount.amount > payment.remaining:
            raise InvalidRequest(
                f"Cannot capture {request.amount}: only {payment.money(payment.remaining)} is still reserved.",
                code="amount_too_large",
                details={"capturable": str(payment.remaining)},
            )
        if request.amount.amount < payment.remaining:
            caps.require(Feature.PARTIAL_CAPTURE, psp=NAME)
        return payment

    def apply(payment: MockPayment) -> OperationResult:
        before = payment.released
        final = request.final or not caps.multiple_captures
        op = ledger.apply_capture(payment, request.amount.amount, final=final, key=request.idempotency_key)
        released = payment.released - before
        return OperationResult(
            psp_reference=payment.reference,
            operation_reference=op.operation_reference,
            status=OperationStatus.SUCCEEDED,
            amount=request.amount,
            processed_at=op.at,
            released=payment.money(released) if released else None,
        )

    return ledger.idempotent("capture", request.idempotency_key, _fingerprint("capture", request), check, apply)


@hookimpl
def psp_void(account: Account, request: VoidRequest) -> OperationResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.VOID, psp=NAME)
    if request.amount is not None:
        _positive(request.amount)
    _trace("void", account, key=request.idempotency_key, reference=request.psp_reference)

    def check() -> tuple[MockPayment, Decimal]:
        payment = _payment(ledger, request.psp_reference)
        if request.amount is not None:
            _same_currency(payment, request.amount)
        ledger.refresh(payment)
        voidable = (PaymentStatus.PENDING, PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED)
        if payment.status not in voidable or payment.remaining <= 0:
            raise InvalidRequest(
                f"Payment {payment.reference} is {payment.status.value}; nothing is left to void.",
                code="nothing_to_void",
            )
        amount = payment.remaining if request.amount is None else request.amount.amount
        if amount > payment.remaining:
            raise InvalidRequest(
                f"Cannot void {payment.money(amount)}: only {payment.money(payment.remaining)} is reserved.",
                code="amount_too_large",
            )
        if amount < payment.remaining:
            caps.require(Feature.PARTIAL_VOID, psp=NAME)
        return payment, amount

    def apply(checked: tuple[MockPayment, Decimal]) -> OperationResult:
        payment, amount = checked
        payment.released += amount
        op = ledger.record("void", payment, amount, new_id("mvoid"), request.idempotency_key)
        if payment.remaining == 0:
            payment.status = PaymentStatus.VOIDED if payment.captured == 0 else PaymentStatus.CAPTURED
            payment.expires_at = None
        ledger.emit_payment("payment.voided", payment, amount)
        return OperationResult(
            psp_reference=payment.reference,
            operation_reference=op.operation_reference,
            status=OperationStatus.SUCCEEDED,
            amount=payment.money(amount),
            processed_at=op.at,
            released=payment.money(amount),
        )

    return ledger.idempotent("void", request.idempotency_key, _fingerprint("void", request), check, apply)


# ==================================================================== money back
@hookimpl
def psp_refund(account: Account, request: RefundRequest) -> OperationResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.REFUND, psp=NAME)
    _positive(request.amount)
    _trace("refund", account, key=request.idempotency_key, reference=request.psp_reference, amount=str(request.amount))

    def check() -> MockPayment:
        payment = _payment(ledger, request.psp_reference)
        _same_currency(payment, request.amount)
        if payment.refundable <= 0:
            raise InvalidRequest(f"Payment {payment.reference} has no captured money left to refund.", code="nothing_to_refund")
        if request.amount.amount > payment.refundable:
            raise InvalidRequest(
                f"Cannot refund {request.amount}: only {payment.money(payment.refundable)} is refundable.",
                code="amount_too_large",
                details={"refundable": str(payment.refundable)},
            )
        if request.amount.amount < payment.refundable:
            caps.require(Feature.PARTIAL_REFUND, psp=NAME)
        if request.lines:
            lines_total = sum((line.gross_amount for line in request.lines), ZERO)
            if lines_total != request.amount.amount:
                raise InvalidRequest(
                    f"The refunded lines add up to {lines_total}, not {request.amount.amount}.",
                    code="lines_do_not_match_amount",
                )
        return payment

    def apply(payment: MockPayment) -> OperationResult:
        amount = request.amount.amount
        payment.refunded += amount
        op = ledger.record("refund", payment, amount, new_id("mref"), request.idempotency_key)
        if payment.refundable == 0 and payment.remaining == 0:
            payment.status = PaymentStatus.REFUNDED
        ledger.balance.append(BalanceTransaction("refund", payment.reference, payment.currency, -amount, ZERO, op.at))
        ledger.emit_payment("payment.refunded", payment, amount)
        return OperationResult(
            psp_reference=payment.reference,
            operation_reference=op.operation_reference,
            status=OperationStatus.SUCCEEDED,
            amount=request.amount,
            processed_at=op.at,
        )

    return ledger.idempotent("refund", request.idempotency_key, _fingerprint("refund", request), check, apply)


@hookimpl
def psp_credit(account: Account, request: CreditRequest) -> OperationResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.CREDIT, psp=NAME)
    caps.require_currency(request.amount.currency, psp=NAME)
    _positive(request.amount)
    _trace("credit", account, key=request.idempotency_key, reference=request.psp_reference, amount=str(request.amount))

    def check() -> MockPayment | None:
        if request.psp_reference is None:
            if request.customer is None:
                raise InvalidRequest("A credit needs the original payment or a customer.", code="credit_without_recipient")
            return None
        payment = _payment(ledger, request.psp_reference)
        _same_currency(payment, request.amount)
        if request.amount.amount > payment.refundable:
            raise InvalidRequest(
                f"Cannot credit {request.amount}: only {payment.money(payment.refundable)} of the payment is left.",
                code="amount_too_large",
                details={"refundable": str(payment.refundable)},
            )
        return payment

    def apply(payment: MockPayment | None) -> OperationResult:
        amount = request.amount.amount
        currency = request.amount.currency
        credit_ref = new_id("mcred")
        op = ledger.record("credit", payment, amount, credit_ref, request.idempotency_key, currency=currency)
        ledger.balance.append(
            BalanceTransaction("refund", payment.reference if payment else None, currency, -amount, ZERO, op.at)
        )
        if payment is not None:
            payment.credited += amount
            if payment.refundable == 0 and payment.remaining == 0:
                payment.status = PaymentStatus.REFUNDED
            ledger.emit_payment("payment.credited", payment, amount, credit=credit_ref)
        else:
            ledger.emit(
                "payment.credited",
                credit=credit_ref,
                currency=currency,
                amount_minor=request.amount.minor_units,
                customer=request.customer.customer_id if request.customer else None,
            )
        return OperationResult(
            psp_reference=payment.reference if payment else credit_ref,
            operation_reference=credit_ref,
            status=OperationStatus.SUCCEEDED,
            amount=request.amount,
            processed_at=op.at,
        )

    return ledger.idempotent("credit", request.idempotency_key, _fingerprint("credit", request), check, apply)


# ==================================================================== carts, links, mandates, renewal
@hookimpl
def psp_update_cart(account: Account, request: CartUpdateRequest) -> ReservationResult:
    _, caps, ledger = _open(account)
    feature = (
        Feature.CART_UPDATE_BEFORE_RESERVATION if request.stage == "before_reservation" else Feature.CART_UPDATE_WHILE_RESERVED
    )
    caps.require(feature, psp=NAME)
    _positive(request.cart.total, "cart total")
    _trace("update_cart", account, key=request.idempotency_key, reference=request.psp_reference, stage=request.stage)

    def check() -> MockPayment:
        payment = _payment(ledger, request.psp_reference)
        _same_currency(payment, request.cart.total)
        ledger.refresh(payment)
        if request.stage == "before_reservation":
            if payment.status is not PaymentStatus.PENDING:
                raise InvalidRequest(
                    f"Payment {payment.reference} is {payment.status.value}, not waiting for the customer.",
                    code="already_reserved",
                )
        elif payment.status is not PaymentStatus.RESERVED or payment.captured != 0:
            raise InvalidRequest(
                f"Payment {payment.reference} is {payment.status.value}; only an uncaptured reservation's cart can change.",
                code="not_reserved",
            )
        return payment

    def apply(payment: MockPayment) -> ReservationResult:
        new_total = request.cart.total.amount
        payment.amount = payment.released + payment.lapsed + new_total
        payment.cart = request.cart
        ledger.emit_payment("payment.updated", payment, new_total, stage=request.stage)
        return _reservation(payment)

    return ledger.idempotent("update_cart", request.idempotency_key, _fingerprint("update_cart", request), check, apply)


@hookimpl
def psp_create_payment_link(account: Account, request: PaymentLinkRequest) -> PaymentLinkResult:
    settings, caps, ledger = _open(account)
    caps.require(Feature.PAY_BY_LINK, psp=NAME)
    caps.require(Feature.AUTO_CAPTURE if request.capture else Feature.RESERVE, psp=NAME)
    if request.cart is None:
        caps.require(Feature.NO_CART, psp=NAME)
    caps.require_currency(request.amount.currency, psp=NAME)
    _positive(request.amount)
    for name in ("success_url", "error_url", "cancel_url"):
        if not str(getattr(request, name)).startswith(("https://", "http://")):
            raise InvalidRequest(f"{name} must be an http(s) URL.", code="invalid_url", details={"field": name})
    _trace("create_payment_link", account, key=request.idempotency_key, amount=str(request.amount))

    def check() -> datetime:
        now = ledger.clock.now()
        expires = request.expires_at or now + timedelta(seconds=settings.link_validity_seconds)
        if expires <= now:
            raise InvalidRequest("The payment link would already be expired.", code="link_expired")
        return expires

    def apply(expires: datetime) -> PaymentLinkResult:
        link_id = new_id("mlink")
        payment = MockPayment(
            reference=new_id("mpay"),
            currency=request.amount.currency,
            amount=request.amount.amount,
            status=PaymentStatus.PENDING,
            created_at=ledger.clock.now(),
            cart=request.cart,
            customer_id=request.customer.customer_id if request.customer else None,
            link_id=link_id,
            capture_on_authorize=request.capture,
        )
        ledger.payments[payment.reference] = payment
        link = MockLink(
            link_id=link_id,
            url=f"https://pay.psp-mock.invalid/l/{link_id}",
            payment_reference=payment.reference,
            status="open",
            expires_at=expires,
            capture=request.capture,
            success_url=request.success_url,
            error_url=request.error_url,
            cancel_url=request.cancel_url,
        )
        ledger.links[link_id] = link
        return PaymentLinkResult(link_id=link_id, url=link.url, expires_at=expires, psp_reference=payment.reference)

    return ledger.idempotent(
        "create_payment_link", request.idempotency_key, _fingerprint("create_payment_link", request), check, apply
    )


@hookimpl
def psp_charge_mandate(account: Account, request: MandateChargeRequest) -> ReservationResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.RECURRING, psp=NAME)
    caps.require_currency(request.amount.currency, psp=NAME)
    _positive(request.amount)
    _trace("charge_mandate", account, key=request.idempotency_key, amount=str(request.amount))

    def check() -> Any:
        mandate = ledger.mandates.get(request.mandate_reference)
        if mandate is None or not mandate.active:
            raise InvalidRequest(f"The mock PSP has no active mandate {request.mandate_reference!r}.", code="no_such_mandate")
        if mandate.customer_id != request.customer.customer_id:
            raise InvalidRequest("The mandate belongs to another customer.", code="mandate_customer_mismatch")
        return mandate

    def apply(mandate: Any) -> ReservationResult:
        payment = MockPayment(
            reference=new_id("mpay"),
            currency=request.amount.currency,
            amount=request.amount.amount,
            status=PaymentStatus.PENDING,
            created_at=ledger.clock.now(),
            cart=request.cart,
            customer_id=request.customer.customer_id,
            mandate_reference=mandate.reference,
        )
        ledger.payments[payment.reference] = payment
        if mandate.outcome != "ok":
            code = "insufficient_funds" if mandate.outcome == "decline" else "authentication_required"
            payment.status = PaymentStatus.FAILED
            payment.decline_code = code
            ledger.declines += 1
            ledger.emit_payment("payment.failed", payment, payment.amount, decline_code=code)
            raise PaymentDeclined(
                "The mock PSP declined the mandate charge.", decline_code=code, details={"psp_reference": payment.reference}
            )
        ledger.authorize_pending(payment.reference, capture=True, key=request.idempotency_key)
        capture = next(op for op in reversed(ledger.operations) if op.kind == "capture" and op.payment_reference == payment.reference)
        return _reservation(payment, capture.operation_reference)

    return ledger.idempotent(
        "charge_mandate", request.idempotency_key, _fingerprint("charge_mandate", request), check, apply
    )


@hookimpl
def psp_renew_reservation(account: Account, request: RenewReservationRequest) -> RenewalResult:
    _, caps, ledger = _open(account)
    caps.require(Feature.RESERVATION_RENEWAL, psp=NAME)
    _positive(request.amount)
    _trace("renew_reservation", account, key=request.idempotency_key, reference=request.psp_reference)

    def check() -> MockPayment:
        payment = _payment(ledger, request.psp_reference)
        _same_currency(payment, request.amount)
        ledger.refresh(payment)
        if payment.status not in (PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED) or payment.remaining <= 0:
            raise InvalidRequest(
                f"Payment {payment.reference} is {payment.status.value}; only a live reservation can be renewed.",
                code="not_renewable",
            )
        return payment

    def apply(old: MockPayment) -> RenewalResult:
        if caps.reservation_renewal is RenewalStyle.EXTEND:
            old.expires_at = (
                ledger.clock.now() + caps.reservation_validity if caps.reservation_validity is not None else None
            )
            ledger.emit_payment("payment.extended", old, None)
            return RenewalResult(reservation=_reservation(old), old_reference_action="extended")
        new = MockPayment(
            reference=new_id("mpay"),
            currency=old.currency,
            amount=request.amount.amount,
            status=PaymentStatus.PENDING,
            created_at=ledger.clock.now(),
            cart=request.cart or old.cart,
            customer_id=old.customer_id,
            renews=old.reference,
        )
        ledger.payments[new.reference] = new
        ledger.authorize_pending(new.reference, key=request.idempotency_key)
        released = old.remaining
        old.released += released
        old.renewed_by = new.reference
        ledger.record("void", old, released, new_id("mvoid"), request.idempotency_key)
        old.status = PaymentStatus.VOIDED if old.captured == 0 else PaymentStatus.CAPTURED
        old.expires_at = None
        ledger.emit_payment("payment.voided", old, released, renewed_by=new.reference)
        return RenewalResult(reservation=_reservation(new), old_reference_action="voided")

    return ledger.idempotent(
        "renew_reservation", request.idempotency_key, _fingerprint("renew_reservation", request), check, apply
    )


# ==================================================================== reading
@hookimpl
def psp_get_payment(account: Account, psp_reference: str) -> PaymentLookup:
    _, caps, ledger = _open(account)
    caps.require(Feature.PAYMENT_LOOKUP, psp=NAME)
    ledger.plain_call("get_payment")
    with ledger.lock:
        payment = ledger.payments.get(psp_reference)
        if payment is None:
            raise RemoteNotFound(f"The mock PSP has no payment {psp_reference!r}.", details={"psp_reference": psp_reference})
        ledger.refresh(payment)
        return PaymentLookup(
            psp_reference=payment.reference,
            status=payment.status,
            amount=payment.money(payment.amount),
            captured=payment.money(payment.captured),
            refunded=payment.money(payment.refunded + payment.credited),
            capturable=payment.money(max(payment.remaining, 0)) if payment.status in (
                PaymentStatus.RESERVED, PaymentStatus.PARTLY_CAPTURED) else payment.money(Decimal(0)),
            expires_at=payment.expires_at,
            customer_id=payment.customer_id,
        )


@hookimpl
def psp_list_payouts(account: Account, since: datetime | None) -> list[Payout]:
    _, caps, ledger = _open(account)
    caps.require(Feature.PAYOUTS, psp=NAME)
    ledger.plain_call("list_payouts")
    return ledger.payouts_since(since)


@hookimpl
def psp_parse_webhook(account: Account, request: WebhookRequest) -> list[PspEvent]:
    settings = settings_of(account)
    settings.capabilities().require(Feature.WEBHOOKS, psp=NAME)
    raw = webhooks.verify(request, settings.webhook_secret.get_secret_value(), settings.webhook_tolerance_seconds)
    return [webhooks.to_event(raw)]


# ==================================================================== conformance
@hookimpl
def payweave_conformance_environment(account_name: str) -> Any:
    from .conformance import conformance_environment

    return conformance_environment(account_name)


def signed_webhook(account: Account, event: dict[str, Any], *, received_at: datetime | None = None, timestamp: int | None = None) -> WebhookRequest:
    """Sign one of the ledger's events with the account's webhook secret (as the PSP sends it)."""
    secret = settings_of(account).webhook_secret.get_secret_value()
    return webhooks.sign(event, secret, timestamp=timestamp, received_at=received_at)


def pending_webhooks(account: Account) -> Iterator[WebhookRequest]:
    """Signed webhooks for the events not yet delivered (marks them delivered)."""
    ledger = ledger_for(account)
    with ledger.lock:
        events = ledger.undelivered_events()
        for event in events:
            ledger.delivered.add(event["id"])
    for event in events:
        yield signed_webhook(account, event, received_at=ledger.clock.now())


def deliver_webhooks(account: Account, url: str, **kwargs: Any) -> list[int]:
    """POST the undelivered events of ``account`` to ``url`` (the payweave service)."""
    return webhooks.deliver(list(pending_webhooks(account)), url, **kwargs)

"""The psp_stripe_like plugin: payweave's PSP hooks over a Stripe-shaped v1 API.

Mapping (see docs/psp-stripe-like.md):

* reservation = a PaymentIntent with ``capture_method=manual`` confirmed at once; AutoCapture
  = ``capture_method=automatic``; the PSP reference is the PaymentIntent id (``pi_...``).
* capture = ``/capture`` with ``amount_to_capture`` (single capture: a partial capture releases
  the rest); void = ``/cancel`` (whole reservation only); refund = ``POST /v1/refunds``.
* pay-by-link = a Checkout Session; recurring = an off-session PaymentIntent on a saved card
  (mandate); renewal = a new off-session authorization on the saved card, then the old one is
  canceled; payouts = ``/v1/payouts`` with ``/v1/balance_transactions?payout=``.
* every money-moving call carries the core's idempotency key as ``Idempotency-Key`` (derived
  sub-keys where one hook makes several calls), so retries never move money twice.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from payweave.hooks import hookimpl
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import ConfigurationError, InvalidRequest, NotSupported, PaymentDeclined, RemoteNotFound
from payweave.hooks.models import (
    Account,
    CaptureRequest,
    Cart,
    CartUpdateRequest,
    Customer,
    MandateChargeRequest,
    Money,
    OperationResult,
    OperationStatus,
    PaymentLinkRequest,
    PaymentLinkResult,
    PaymentLookup,
    PaymentStatus,
    Payout,
    PayoutLine,
    PluginInfo,
    PluginKind,
    PspEvent,
    RefundRequest,
    RenewalResult,
    RenewReservationRequest,
    ReservationResult,
    ReserveRequest,
    SandboxSpec,
    VoidRequest,
    WebhookRequest,
)
from payweave.hooks.money import from_minor_units

from . import webhooks
from .client import StripeClient, client_for, derive_key
from .settings import StripeLikeSettings

NAME = "psp_stripe_like"
TITLE = "Stripe-like PSP"
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
PENDING_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")


# ============================================================================================
# helpers
# ============================================================================================
def _settings(account: Account) -> StripeLikeSettings:
    if not isinstance(account.settings, StripeLikeSettings):
        raise ConfigurationError(
            f"Account {account.name!r} of {NAME} has no {NAME} settings (api_key, base_url).",
            details={"plugin": NAME, "account": account.name},
        )
    return account.settings


def _caps(account: Account) -> PspCapabilities:
    return _settings(account).capabilities()


def _client(account: Account) -> StripeClient:
    return client_for(_settings(account))


def _require(account: Account, feature: Feature) -> PspCapabilities:
    caps = _caps(account)
    caps.require(feature, psp=TITLE)
    return caps


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int) and not isinstance(value, bool) else None


def _money(minor: int, currency: str) -> Money:
    return Money.from_minor(int(minor), currency)


def _metadata(transaction_id: str, reference: str = "", extra: dict[str, str] | None = None) -> dict[str, str]:
    """Stripe metadata: at most 50 keys, keys <= 40 chars, values <= 500 chars."""
    metadata: dict[str, str] = {}
    for key, value in (extra or {}).items():
        if len(metadata) >= 47:
            break
        metadata[str(key)[:40]] = str(value)[:500]
    metadata["payweave_transaction_id"] = transaction_id[:500]
    if reference:
        metadata["payweave_reference"] = reference[:500]
    return metadata


def _cart_metadata(cart: Cart | None) -> dict[str, str]:
    if cart is None:
        return {}
    return {"payweave_cart_lines": str(len(cart.lines)), "payweave_cart_net": str(cart.total_net),
            "payweave_cart_tax": str(cart.total_tax)}  # fmt: skip


def _charge(pi: dict[str, Any]) -> dict[str, Any] | None:
    charge = pi.get("latest_charge")
    return charge if isinstance(charge, dict) else None


def _expires_at(pi: dict[str, Any]) -> datetime | None:
    charge = _charge(pi)
    if pi.get("status") != "requires_capture" or charge is None:
        return None
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    return _ts(card.get("capture_before"))


def _reservation(pi: dict[str, Any]) -> ReservationResult:
    status = pi["status"]
    if status == "requires_capture":
        payment_status = PaymentStatus.RESERVED
    elif status == "succeeded":
        payment_status = PaymentStatus.CAPTURED
    elif status in PENDING_STATUSES:
        payment_status = PaymentStatus.PENDING
    else:
        payment_status = PaymentStatus.FAILED
    charge = _charge(pi)
    return ReservationResult(
        psp_reference=pi["id"],
        status=payment_status,
        amount=_money(pi["amount"], pi["currency"]),
        captured=_money(pi["amount_received"], pi["currency"]),
        expires_at=_expires_at(pi),
        operation_reference=charge["id"] if charge else None,
        raw_status=status,
    )


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _check_currency(caps: PspCapabilities, amount: Money) -> None:
    caps.require_currency(amount.currency, psp=TITLE)


_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")


def _path_id(value: str, prefix: str, label: str) -> str:
    """An id that goes into a URL path: only Stripe's id alphabet, with the expected prefix.
    Anything else cannot exist at the PSP (and must never reach another endpoint)."""
    if not value.startswith(prefix) or not _ID.match(value):
        raise RemoteNotFound(f"No {label} {value!r} exists at {TITLE} (its ids start with {prefix!r}).",
                             details={"reference": value[:100]})  # fmt: skip
    return value


def _positive(amount: Money, what: str) -> int:
    minor = amount.minor_units
    if minor <= 0:
        raise InvalidRequest(f"The amount to {what} must be positive, not {amount}.", code="invalid_amount",
                             details={"amount": str(amount.amount), "currency": amount.currency})  # fmt: skip
    return minor


def _get_pi(client: StripeClient, psp_reference: str) -> dict[str, Any]:
    reference = _path_id(psp_reference, "pi_", "payment")
    return client.request("GET", f"/v1/payment_intents/{reference}", {"expand": ["latest_charge"]})


def _check_same_currency(pi: dict[str, Any], amount: Money) -> None:
    if pi["currency"].upper() != amount.currency:
        raise InvalidRequest(
            f"The payment {pi['id']} is in {pi['currency'].upper()}, not {amount.currency}.",
            code="currency_mismatch",
            details={"psp_reference": pi["id"], "currency": amount.currency},
        )


# ============================================================================================
# identity, sandbox, conformance
# ============================================================================================
@hookimpl
def payweave_plugin_info() -> PluginInfo:
    return PluginInfo(name=NAME, kind=PluginKind.PSP, title=TITLE, settings_model=StripeLikeSettings)


@hookimpl
def payweave_sandboxes() -> list[SandboxSpec]:
    from .sandbox.env import app_from_env

    return [
        SandboxSpec(
            command="stripe-sandbox",
            description="the Stripe-shaped PSP sandbox (Stripe v1 API on loopback)",
            app_factory=app_from_env,
            default_port=12111,
        )
    ]


@hookimpl
def payweave_conformance_environment(account_name: str) -> contextlib.AbstractContextManager[Any]:
    from .conformance import sandbox_environment

    return sandbox_environment(account_name)


# ============================================================================================
# PSP hooks
# ============================================================================================
@hookimpl
def psp_capabilities(account: Account) -> PspCapabilities:
    return _caps(account)


def _stripe_customer(client: StripeClient, customer: Customer, idempotency_key: str) -> str:
    """The Stripe Customer for a payweave customer: found by metadata, else created (once per key)."""
    if "'" not in customer.customer_id and "\\" not in customer.customer_id:
        query = f"metadata['payweave_customer_id']:'{customer.customer_id}'"
        found = client.request("GET", "/v1/customers/search", {"query": query, "limit": 1})
        if found.get("data"):
            return found["data"][0]["id"]
    params: dict[str, Any] = {"metadata": {"payweave_customer_id": customer.customer_id}}
    if customer.name:
        params["name"] = customer.name
    if customer.email:
        params["email"] = customer.email
    if customer.number:
        params["metadata"]["payweave_customer_number"] = customer.number
    return client.request("POST", "/v1/customers", params, idempotency_key=idempotency_key)["id"]


@hookimpl
def psp_reserve(account: Account, request: ReserveRequest) -> ReservationResult:
    caps = _require(account, Feature.AUTO_CAPTURE if request.capture else Feature.RESERVE)
    if request.cart is None:
        caps.require(Feature.NO_CART, psp=TITLE)
    _check_currency(caps, request.amount)
    settings = _settings(account)
    client = _client(account)
    params: dict[str, Any] = {
        "amount": _positive(request.amount, "reserve"),
        "currency": request.amount.currency.lower(),
        "capture_method": "automatic" if request.capture else "manual",
        "metadata": _metadata(request.transaction_id, request.reference, {**request.metadata, **_cart_metadata(request.cart)}),
        "expand": ["latest_charge"],
    }
    if request.reference:
        params["description"] = request.reference
    if request.payment_method_token:
        params["payment_method"] = request.payment_method_token
        params["confirm"] = True
    if settings.save_cards_for_renewal and request.customer is not None and not request.capture:
        params["customer"] = _stripe_customer(client, request.customer, derive_key(request.idempotency_key, "customer"))
        params["setup_future_usage"] = "off_session"
    pi = client.request("POST", "/v1/payment_intents", params, idempotency_key=request.idempotency_key)
    return _reservation(pi)


@hookimpl
def psp_capture(account: Account, request: CaptureRequest) -> OperationResult:
    caps = _require(account, Feature.CAPTURE)
    # Stripe captures a reservation once: every capture is final (``final=False`` included, as
    # the contract says for single-capture PSPs); the rest is released and reported.
    minor = _positive(request.amount, "capture")
    client = _client(account)
    # Read first: the minor units below only mean the right money in the payment's own currency.
    _check_same_currency(_get_pi(client, request.psp_reference), request.amount)
    try:
        pi = client.request(
            "POST",
            f"/v1/payment_intents/{request.psp_reference}/capture",
            {"amount_to_capture": minor, "expand": ["latest_charge"]},
            idempotency_key=request.idempotency_key,
        )
    except InvalidRequest as exc:
        already = exc.details.get("code") == "payment_intent_unexpected_state" and exc.details.get(
            "payment_intent_status"
        ) == "succeeded"
        if already and not caps.multiple_captures:
            raise NotSupported(
                f"{TITLE} captures a reservation once; {request.psp_reference} has been captured already.",
                details={"feature": Feature.MULTIPLE_CAPTURES.value, "psp_reference": request.psp_reference},
            ) from None
        raise
    currency = pi["currency"]
    charge = _charge(pi)
    released = pi["amount"] - pi["amount_received"]
    return OperationResult(
        psp_reference=pi["id"],
        operation_reference=charge["id"] if charge else pi["id"],
        status=OperationStatus.SUCCEEDED if pi["status"] == "succeeded" else OperationStatus.PENDING,
        amount=_money(pi["amount_received"], currency),
        released=_money(released, currency) if released else None,
    )


@hookimpl
def psp_void(account: Account, request: VoidRequest) -> OperationResult:
    caps = _require(account, Feature.VOID)
    client = _client(account)
    if request.amount is not None and not caps.declares(Feature.PARTIAL_VOID):
        pi = _get_pi(client, request.psp_reference)
        _check_same_currency(pi, request.amount)
        # An explicit amount is fine when it is everything still reserved (an idempotent retry
        # after the cancel finds nothing reserved and replays the first answer below).
        if pi["status"] == "requires_capture" and request.amount.minor_units != pi["amount_capturable"]:
            raise NotSupported(
                f"{TITLE} can only release a whole reservation ({from_minor_units(pi['amount_capturable'], pi['currency'])} "
                f"{request.amount.currency}), not {request.amount}.",
                details={"feature": Feature.PARTIAL_VOID.value},
            )
    params: dict[str, Any] = {"expand": ["latest_charge"]}
    reason = request.reason.strip().lower()
    if reason in CANCELLATION_REASONS:
        params["cancellation_reason"] = reason
    reference = _path_id(request.psp_reference, "pi_", "payment")
    pi = client.request("POST", f"/v1/payment_intents/{reference}/cancel", params, idempotency_key=request.idempotency_key)
    released = pi["amount"] - pi["amount_received"]
    charge = _charge(pi)
    return OperationResult(
        psp_reference=pi["id"],
        operation_reference=charge["id"] if charge else pi["id"],
        status=OperationStatus.SUCCEEDED,
        amount=_money(released, pi["currency"]),
        processed_at=_ts(pi.get("canceled_at")),
        released=_money(released, pi["currency"]),
    )


def _refund(account: Account, psp_reference: str, amount: Money, reason: str, metadata: dict[str, str],
            idempotency_key: str) -> OperationResult:  # fmt: skip
    minor = _positive(amount, "refund")
    client = _client(account)
    _check_same_currency(_get_pi(client, psp_reference), amount)
    params: dict[str, Any] = {"payment_intent": psp_reference, "amount": minor, "metadata": metadata}
    if reason.strip().lower() in REFUND_REASONS:
        params["reason"] = reason.strip().lower()
    refund = client.request("POST", "/v1/refunds", params, idempotency_key=idempotency_key)
    if refund["status"] in ("failed", "canceled"):
        raise InvalidRequest(
            f"The PSP reports refund {refund['id']} as {refund['status']} ({refund.get('failure_reason') or 'no reason given'}).",
            code="refund_failed",
            details={"refund": refund["id"], "failure_reason": refund.get("failure_reason")},
        )
    return OperationResult(
        psp_reference=psp_reference,
        operation_reference=refund["id"],
        status=OperationStatus.SUCCEEDED if refund["status"] == "succeeded" else OperationStatus.PENDING,
        amount=_money(refund["amount"], refund["currency"]),
        processed_at=_ts(refund.get("created")),
    )


@hookimpl
def psp_refund(account: Account, request: RefundRequest) -> OperationResult:
    _require(account, Feature.REFUND)
    metadata = _metadata(request.transaction_id)
    if request.reason:
        metadata["payweave_reason"] = request.reason[:500]
    if request.lines:
        metadata["payweave_refund_lines"] = ",".join(line.line_id for line in request.lines)[:500]
    return _refund(account, request.psp_reference, request.amount, request.reason, metadata, request.idempotency_key)


@hookimpl
def psp_update_cart(account: Account, request: CartUpdateRequest) -> ReservationResult:
    caps = _caps(account)
    feature = (
        Feature.CART_UPDATE_BEFORE_RESERVATION if request.stage == "before_reservation" else Feature.CART_UPDATE_WHILE_RESERVED
    )
    caps.require(feature, psp=TITLE)
    total = request.cart.total
    _check_currency(caps, total)
    minor = _positive(total, "pay")
    client = _client(account)
    pi = client.request(
        "POST",
        f"/v1/payment_intents/{_path_id(request.psp_reference, 'pi_', 'payment')}",
        {
            "amount": minor,
            "currency": total.currency.lower(),
            "metadata": _cart_metadata(request.cart),
            "expand": ["latest_charge"],
        },
        idempotency_key=request.idempotency_key,
    )
    return _reservation(pi)


def _link_line_items(request: PaymentLinkRequest) -> list[dict[str, Any]]:
    """One Checkout line per cart line when every line is a positive amount; otherwise (no
    cart, discounts or vouchers as negative lines) one line with the total. The sum always
    equals the amount to the minor unit."""
    currency = request.amount.currency.lower()
    cart = request.cart
    if cart is not None and cart.lines and all(line.gross_amount > 0 for line in cart.lines):
        items = []
        for line in cart.lines:
            quantity = line.quantity.normalize()
            label = line.description or line.number or line.line_id
            name = label if quantity == 1 else f"{quantity} x {label}"
            items.append(
                {
                    "price_data": {
                        "currency": currency,
                        "unit_amount": Money(amount=line.gross_amount, currency=cart.currency).minor_units,
                        "product_data": {"name": name[:250]},
                    },
                    "quantity": 1,
                }
            )
        return items
    name = request.reference or f"Payment {request.transaction_id}"
    return [{"price_data": {"currency": currency, "unit_amount": request.amount.minor_units,
                            "product_data": {"name": name[:250]}}, "quantity": 1}]  # fmt: skip


@hookimpl
def psp_create_payment_link(account: Account, request: PaymentLinkRequest) -> PaymentLinkResult:
    caps = _require(account, Feature.PAY_BY_LINK)
    caps.require(Feature.AUTO_CAPTURE if request.capture else Feature.RESERVE, psp=TITLE)
    _check_currency(caps, request.amount)
    _positive(request.amount, "pay")
    client = _client(account)
    metadata = _metadata(request.transaction_id, request.reference, {"payweave_error_url": request.error_url})
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": _link_line_items(request),
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
        "client_reference_id": request.transaction_id[:200],
        "metadata": metadata,
        "payment_intent_data": {
            "capture_method": "automatic" if request.capture else "manual",
            "metadata": _metadata(request.transaction_id, request.reference, _cart_metadata(request.cart)),
        },
    }
    if request.reference:
        params["payment_intent_data"]["description"] = request.reference
    if request.customer is not None and request.customer.email:
        params["customer_email"] = request.customer.email
    if request.expires_at is not None:
        params["expires_at"] = int(request.expires_at.timestamp())
    session = client.request("POST", "/v1/checkout/sessions", params, idempotency_key=request.idempotency_key)
    return PaymentLinkResult(
        link_id=session["id"],
        url=session["url"],
        expires_at=_ts(session.get("expires_at")),
        psp_reference=session.get("payment_intent") if isinstance(session.get("payment_intent"), str) else None,
    )


def _mandate_payment_method(client: StripeClient, mandate_reference: str) -> tuple[str, str, str | None]:
    """(payment_method, stripe customer, mandate id) for a ``mandate_...`` or a saved ``pm_...``."""
    mandate_id: str | None = None
    if mandate_reference.startswith("mandate_"):
        mandate = client.request("GET", f"/v1/mandates/{_path_id(mandate_reference, 'mandate_', 'mandate')}")
        if mandate.get("status") != "active":
            raise InvalidRequest(f"The mandate {mandate_reference} is {mandate.get('status')}, not active.",
                                 code="mandate_inactive", details={"mandate": mandate_reference})  # fmt: skip
        mandate_id = mandate_reference
        pm_id = mandate["payment_method"] if isinstance(mandate["payment_method"], str) else mandate["payment_method"]["id"]
    elif mandate_reference.startswith("pm_"):
        pm_id = _path_id(mandate_reference, "pm_", "payment method")
    else:
        raise RemoteNotFound(
            f"{mandate_reference[:100]!r} is not a mandate (mandate_...) or saved payment method (pm_...) of {TITLE}.",
            details={"mandate_reference": mandate_reference[:100]},
        )
    pm = client.request("GET", f"/v1/payment_methods/{_path_id(pm_id, 'pm_', 'payment method')}")
    customer = pm.get("customer")
    if not isinstance(customer, str):
        raise InvalidRequest(
            f"The payment method {pm_id} is not saved for a customer, so it cannot be charged off-session.",
            code="mandate_not_reusable",
            details={"mandate_reference": mandate_reference},
        )
    return pm_id, customer, mandate_id


@hookimpl
def psp_charge_mandate(account: Account, request: MandateChargeRequest) -> ReservationResult:
    caps = _require(account, Feature.RECURRING)
    _check_currency(caps, request.amount)
    minor = _positive(request.amount, "charge")
    client = _client(account)
    pm_id, customer, mandate_id = _mandate_payment_method(client, request.mandate_reference)
    params: dict[str, Any] = {
        "amount": minor,
        "currency": request.amount.currency.lower(),
        "capture_method": "automatic",
        "customer": customer,
        "payment_method": pm_id,
        "off_session": True,
        "confirm": True,
        "metadata": _metadata(request.transaction_id, request.reference,
                              {"payweave_customer_id": request.customer.customer_id, **_cart_metadata(request.cart)}),
        "expand": ["latest_charge"],
    }  # fmt: skip
    if mandate_id is not None:
        params["mandate"] = mandate_id
    if request.reference:
        params["description"] = request.reference
    pi = client.request("POST", "/v1/payment_intents", params, idempotency_key=request.idempotency_key)
    result = _reservation(pi)
    if result.status is not PaymentStatus.CAPTURED:
        # An off-session charge cannot wait for the customer: anything but success is a decline.
        raise PaymentDeclined(
            f"The off-session charge {pi['id']} ended in status {pi['status']} instead of succeeding.",
            decline_code=(pi.get("last_payment_error") or {}).get("decline_code") or pi["status"],
            details={"psp_reference": pi["id"]},
        )
    return result


@hookimpl
def psp_renew_reservation(account: Account, request: RenewReservationRequest) -> RenewalResult:
    caps = _require(account, Feature.RESERVATION_RENEWAL)
    _check_currency(caps, request.amount)
    minor = _positive(request.amount, "reserve")
    client = _client(account)
    old = _get_pi(client, request.psp_reference)
    _check_same_currency(old, request.amount)
    customer = old.get("customer")
    pm_id = old.get("payment_method")
    if not isinstance(customer, str) or not isinstance(pm_id, str):
        raise InvalidRequest(
            f"The reservation {old['id']} was made without a saved card (customer and payment method), so it "
            "cannot be re-authorized off-session; reserve anew with the customer present.",
            code="renewal_not_possible",
            details={"psp_reference": old["id"]},
        )
    metadata = {**old.get("metadata", {}), "payweave_renews": old["id"], **_cart_metadata(request.cart)}
    params: dict[str, Any] = {
        "amount": minor,
        "currency": request.amount.currency.lower(),
        "capture_method": "manual",
        "customer": customer,
        "payment_method": pm_id,
        "off_session": True,
        "confirm": True,
        "metadata": {k: str(v)[:500] for k, v in list(metadata.items())[:50]},
        "expand": ["latest_charge"],
    }
    if old.get("description"):
        params["description"] = old["description"]
    new = client.request("POST", "/v1/payment_intents", params, idempotency_key=derive_key(request.idempotency_key, "reauthorize"))
    reservation = _reservation(new)
    if reservation.status is not PaymentStatus.RESERVED:
        raise PaymentDeclined(
            f"The re-authorization {new['id']} ended in status {new['status']}; the old reservation is kept.",
            decline_code=(new.get("last_payment_error") or {}).get("decline_code") or new["status"],
            details={"psp_reference": new["id"], "old_psp_reference": old["id"]},
        )
    if old["status"] in ("requires_capture", *PENDING_STATUSES):
        client.request(
            "POST",
            f"/v1/payment_intents/{old['id']}/cancel",
            {"cancellation_reason": "duplicate"},
            idempotency_key=derive_key(request.idempotency_key, "release-old"),
        )
        action = "voided"
    else:
        action = "lapses"  # already expired or canceled at the PSP: nothing to release
    return RenewalResult(reservation=reservation, old_reference_action=action)


@hookimpl
def psp_get_payment(account: Account, psp_reference: str) -> PaymentLookup:
    _require(account, Feature.PAYMENT_LOOKUP)
    pi = _get_pi(_client(account), psp_reference)
    currency = pi["currency"]
    charge = _charge(pi)
    captured = pi["amount_received"]
    refunded = charge["amount_refunded"] if charge is not None and charge.get("captured") else 0
    status = pi["status"]
    if status == "requires_capture":
        payment_status = PaymentStatus.RESERVED
    elif status == "succeeded":
        payment_status = PaymentStatus.REFUNDED if captured and refunded >= captured else PaymentStatus.CAPTURED
    elif status == "canceled":
        payment_status = PaymentStatus.EXPIRED if pi.get("cancellation_reason") == "automatic" else PaymentStatus.VOIDED
    elif status == "requires_payment_method" and pi.get("last_payment_error"):
        payment_status = PaymentStatus.FAILED
    else:
        payment_status = PaymentStatus.PENDING
    return PaymentLookup(
        psp_reference=pi["id"],
        status=payment_status,
        amount=_money(pi["amount"], currency),
        captured=_money(captured, currency),
        refunded=_money(refunded, currency),
        capturable=_money(pi.get("amount_capturable") or 0, currency) if status == "requires_capture" else _money(0, currency),
        expires_at=_expires_at(pi),
        customer_id=pi.get("customer") if isinstance(pi.get("customer"), str) else None,
    )


@hookimpl
def psp_parse_webhook(account: Account, request: WebhookRequest) -> list[PspEvent]:
    _require(account, Feature.WEBHOOKS)
    settings = _settings(account)
    webhooks.verify(
        request.body,
        request.headers.get(webhooks.SIGNATURE_HEADER),
        settings.webhook_secrets(),
        tolerance=settings.webhook_tolerance_seconds,
        now=request.received_at.timestamp(),
    )
    return webhooks.parse(request.body)


def _pages(client: StripeClient, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object of a Stripe list, following ``has_more`` / ``starting_after``."""
    after: str | None = None
    while True:
        page = client.request("GET", path, {**params, "limit": 100, **({"starting_after": after} if after else {})})
        data = page.get("data") or []
        yield from data
        if not page.get("has_more") or not data:
            return
        after = data[-1]["id"]


def _payout_line(txn: dict[str, Any]) -> PayoutLine | None:
    kind_map = {"charge": "charge", "payment": "charge", "refund": "refund", "payment_refund": "refund",
                "adjustment": "adjustment"}  # fmt: skip
    if txn["type"] in ("payout", "payout_failure", "payout_cancel"):
        return None  # the payout's own movement, not a line of it
    source = txn.get("source")
    # the payment a charge or refund belongs to; the source's own id for anything else
    reference = (_id(source.get("payment_intent")) or _id(source)) if isinstance(source, dict) else _id(source)
    currency = txn["currency"]
    return PayoutLine(
        psp_reference=reference,
        kind=kind_map.get(txn["type"], "other"),  # type: ignore[arg-type]
        gross=from_minor_units(txn["amount"], currency),
        fee=from_minor_units(txn["fee"], currency),
        net=from_minor_units(txn["net"], currency),
    )


@hookimpl
def psp_list_payouts(account: Account, since: datetime | None) -> list[Payout]:
    _require(account, Feature.PAYOUTS)
    client = _client(account)
    params: dict[str, Any] = {}
    if since is not None:
        params["created"] = {"gt": int(since.timestamp())}
    payouts = list(_pages(client, "/v1/payouts", params))
    payouts.reverse()  # lists come newest first; ids are random, so keep the PSP's order within a second
    payouts.sort(key=lambda p: p["created"])  # stable
    result = []
    for payout in payouts:
        if since is not None and payout["created"] <= since.timestamp():
            continue
        currency = payout["currency"]
        lines = []
        for txn in _pages(client, "/v1/balance_transactions", {"payout": payout["id"], "expand": ["data.source"]}):
            line = _payout_line(txn)
            if line is not None:
                lines.append(line)
        lines.reverse()  # oldest first
        net = from_minor_units(payout["amount"], currency)
        if lines:
            gross = sum((line.gross for line in lines), Decimal(0))
            fee = sum((line.fee for line in lines), Decimal(0))
            if gross - fee != net:
                raise InvalidRequest(
                    f"Payout {payout['id']} ({net} {currency.upper()}) does not equal its transactions' net "
                    f"({gross - fee}); the PSP's report is inconsistent.",
                    code="payout_inconsistent",
                    details={"payout": payout["id"]},
                )
        else:  # e.g. a failed payout: its transactions went back to the balance
            gross, fee = net, Decimal(0)
        arrival = _ts(payout.get("arrival_date"))
        result.append(
            Payout(
                payout_id=payout["id"],
                currency=currency.upper(),
                gross=gross,
                fee=fee,
                net=net,
                arrival_date=arrival.date() if arrival else date.fromtimestamp(payout["created"]),
                status=payout["status"],
                lines=tuple(lines),
            )
        )
    return result

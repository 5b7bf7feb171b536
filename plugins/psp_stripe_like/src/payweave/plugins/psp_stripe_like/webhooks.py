"""Webhook verification (``Stripe-Signature``) and normalization into the contract's events."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from payweave.hooks.errors import InvalidRequest, WebhookVerificationFailed
from payweave.hooks.models import EventType, Money, PspEvent

SIGNATURE_HEADER = "stripe-signature"
SCHEME = "v1"


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=<hex>...]`` -> (timestamp, v1 signatures); other schemes ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is not None or not value.isdigit():
                raise WebhookVerificationFailed("The Stripe-Signature header has an invalid timestamp.")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value.strip())
    if timestamp is None:
        raise WebhookVerificationFailed("The Stripe-Signature header has no timestamp.")
    if not signatures:
        raise WebhookVerificationFailed("The Stripe-Signature header has no v1 signature.")
    return timestamp, signatures


def verify(payload: bytes, header: str | None, secrets: list[str], *, tolerance: int, now: float) -> int:
    """Check the raw ``payload`` against ``header``; return the signed timestamp.

    Any ``v1`` entry matching any secret passes (constant-time comparison). The timestamp must
    lie within ``tolerance`` seconds of ``now`` (older is a replay; far ahead is forged or skewed).
    """
    if not header:
        raise WebhookVerificationFailed("The webhook has no Stripe-Signature header.")
    if not secrets:
        raise WebhookVerificationFailed("No webhook signing secret is configured for this account.")
    timestamp, signatures = parse_signature_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(payload, secret, timestamp)
        for candidate in signatures:
            # compare every pair: no early exit that would leak which one matched
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise WebhookVerificationFailed("No signature in the Stripe-Signature header matches the payload.")
    if timestamp < now - tolerance:
        raise WebhookVerificationFailed(
            f"The webhook was signed {int(now - timestamp)} s ago, outside the {tolerance} s tolerance (possible replay).",
            details={"age_seconds": int(now - timestamp), "tolerance_seconds": tolerance},
        )
    if timestamp > now + tolerance:
        raise WebhookVerificationFailed(
            f"The webhook's signature time lies {int(timestamp - now)} s in the future, outside the {tolerance} s tolerance.",
            details={"ahead_seconds": int(timestamp - now), "tolerance_seconds": tolerance},
        )
    return timestamp


def _money(minor: Any, currency: Any) -> Money | None:
    if isinstance(minor, bool) or not isinstance(minor, int) or not isinstance(currency, str):
        return None
    return Money.from_minor(minor, currency)


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def normalize(event: dict[str, Any]) -> PspEvent:
    """Map one Stripe event to a :class:`PspEvent` (``unknown`` for types not mapped)."""
    raw_type = event["type"]
    obj: dict[str, Any] = event["data"]["object"]
    previous: dict[str, Any] = event["data"].get("previous_attributes") or {}
    currency = obj.get("currency")
    base: dict[str, Any] = {
        "event_id": event["id"],
        "raw_type": raw_type,
        "occurred_at": datetime.fromtimestamp(int(event["created"]), UTC),
        "data": {"object_id": obj.get("id"), "object": obj.get("object"), "status": obj.get("status")},
    }
    kind = EventType.UNKNOWN
    if raw_type == "payment_intent.amount_capturable_updated":
        kind = EventType.AUTHORIZED
        base.update(psp_reference=obj["id"], amount=_money(obj.get("amount_capturable"), currency))
    elif raw_type == "payment_intent.succeeded":
        kind = EventType.CAPTURED
        received = _money(obj.get("amount_received"), currency)
        base.update(psp_reference=obj["id"], amount=received, total_captured=received)
    elif raw_type == "payment_intent.canceled":
        kind = EventType.EXPIRED if obj.get("cancellation_reason") == "automatic" else EventType.VOIDED
        base.update(psp_reference=obj["id"])
        base["data"]["cancellation_reason"] = obj.get("cancellation_reason")
    elif raw_type == "payment_intent.payment_failed":
        kind = EventType.PAYMENT_FAILED
        error = obj.get("last_payment_error") or {}
        base.update(psp_reference=obj["id"], amount=_money(obj.get("amount"), currency))
        base["data"].update(decline_code=error.get("decline_code"), code=error.get("code"), message=error.get("message"))
    elif raw_type == "charge.expired":
        kind = EventType.EXPIRED
        base.update(psp_reference=_id(obj.get("payment_intent")), amount=_money(obj.get("amount"), currency))
    elif raw_type == "charge.refunded":
        base.update(psp_reference=_id(obj.get("payment_intent")))
        if obj.get("captured"):
            kind = EventType.REFUNDED
            total = obj.get("amount_refunded")
            before = previous.get("amount_refunded")
            if isinstance(total, int) and isinstance(before, int):
                base["amount"] = _money(total - before, currency)
            base.update(
                total_refunded=_money(total, currency), total_captured=_money(obj.get("amount_captured"), currency)
            )
        else:
            # Releasing an uncaptured hold shows as a "refund" of the charge: it is a void.
            kind = EventType.VOIDED
    elif raw_type == "checkout.session.completed":
        kind = EventType.LINK_COMPLETED
        base.update(link_id=obj["id"], psp_reference=_id(obj.get("payment_intent")),
                    amount=_money(obj.get("amount_total"), currency))  # fmt: skip
        base["data"].update(
            payment_status=obj.get("payment_status"),
            client_reference_id=obj.get("client_reference_id"),
            setup_intent=_id(obj.get("setup_intent")),
            customer=_id(obj.get("customer")),
        )
    elif raw_type == "checkout.session.expired":
        kind = EventType.LINK_EXPIRED
        base.update(link_id=obj["id"])
    elif raw_type in ("payout.paid", "payout.failed"):
        kind = EventType.PAYOUT_PAID if raw_type == "payout.paid" else EventType.PAYOUT_FAILED
        base.update(payout_id=obj["id"], amount=_money(obj.get("amount"), currency))
        base["data"].update(failure_code=obj.get("failure_code"))
    return PspEvent(type=kind, **base)


def parse(payload: bytes) -> list[PspEvent]:
    """Parse a verified payload (one event per delivery, as Stripe sends)."""
    try:
        event = json.loads(payload)
        if not isinstance(event, dict) or event.get("object") != "event":
            raise ValueError("not an event object")
        if not isinstance(event["data"]["object"], dict) or not isinstance(event["id"], str):
            raise ValueError("event without data.object or id")
        return [normalize(event)]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"The webhook body is not a Stripe event: {exc}", code="webhook_body_invalid") from None

"""Webhooks of the mock PSP: HMAC-SHA256 signed JSON events, Stripe-style.

Header ``psp-mock-signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
``HMAC-SHA256(webhook_secret, f"{t}." + raw_body)``. Several ``v1`` entries are allowed (secret
rotation). Verification compares in constant time and refuses signatures older than
``webhook_tolerance_seconds`` relative to the time the webhook was received (like
stripe-python, a timestamp in the future is not refused, so tests may move the PSP's clock).

Body::

    {"id": "mevt_...", "type": "payment.captured", "created": 1767225600, "livemode": false,
     "data": {"payment": "mpay_...", "currency": "EUR", "amount_minor": 1050,
              "total_captured_minor": 1050, "total_refunded_minor": 0, "status": "captured"}}

Amounts travel in minor units, converted with :mod:`payweave.hooks.money`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from payweave.hooks.errors import InvalidRequest, WebhookVerificationFailed
from payweave.hooks.models import EventType, PspEvent, WebhookRequest
from payweave.hooks.money import Money, MoneyError

SIGNATURE_HEADER = "psp-mock-signature"

#: Raw event type -> normalized type. Anything else is ``unknown`` (stored, acknowledged).
EVENT_TYPES: dict[str, EventType] = {
    "payment.authorized": EventType.AUTHORIZED,
    "payment.captured": EventType.CAPTURED,
    "payment.voided": EventType.VOIDED,
    "payment.refunded": EventType.REFUNDED,
    "payment.credited": EventType.CREDITED,
    "payment.expired": EventType.EXPIRED,
    "payment.failed": EventType.PAYMENT_FAILED,
    "link.completed": EventType.LINK_COMPLETED,
    "link.expired": EventType.LINK_EXPIRED,
    "payout.paid": EventType.PAYOUT_PAID,
    "payout.failed": EventType.PAYOUT_FAILED,
}
RAW_TYPES: dict[EventType, str] = {v: k for k, v in EVENT_TYPES.items()}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(event: dict[str, Any], secret: str, *, timestamp: int | None = None, received_at: datetime | None = None) -> WebhookRequest:
    """Serialize ``event`` and sign it as the mock PSP does; ``timestamp`` defaults to the
    event's ``created``."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    t = int(event["created"]) if timestamp is None else int(timestamp)
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: f"t={t},v1={signature(secret, t, body)}",
    }
    return WebhookRequest(headers=headers, body=body, received_at=received_at or datetime.fromtimestamp(t, UTC))


def verify(request: WebhookRequest, secret: str, tolerance_seconds: int) -> dict[str, Any]:
    """Verify the signature (before parsing anything) and return the decoded event."""
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise WebhookVerificationFailed(f"The webhook has no {SIGNATURE_HEADER} header.", code="webhook_signature_missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookVerificationFailed("The webhook signature header is malformed.", code="webhook_signature_malformed")
    expected = signature(secret, timestamp, request.body)
    # compare against every candidate in constant time, without short-circuiting on a match
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise WebhookVerificationFailed("The webhook signature does not match.", code="webhook_signature_invalid")
    age = request.received_at.timestamp() - timestamp
    if age > tolerance_seconds:
        raise WebhookVerificationFailed(
            f"The webhook was signed {int(age)} s before it was received (tolerance {tolerance_seconds} s).",
            code="webhook_signature_stale",
        )
    try:
        event = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("The webhook body is not JSON.", code="webhook_body_invalid") from None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict) or "id" not in event or "type" not in event:
        raise InvalidRequest("The webhook body is not a mock PSP event.", code="webhook_body_invalid")
    return event


def to_event(raw: dict[str, Any]) -> PspEvent:
    data: dict[str, Any] = raw["data"]
    currency = data.get("currency")
    # an event's amounts repeat (a capture's amount is its total, a refund total is often 0):
    # Money is immutable, so equal amounts share one (each validation costs microseconds)
    built: dict[int, Money] = {}

    def money(key: str) -> Money | None:
        if currency is None or key not in data:
            return None
        try:
            minor = int(data[key])
            if minor not in built:
                built[minor] = Money.from_minor(minor, currency)
            return built[minor]
        except (MoneyError, ValueError, TypeError):
            raise InvalidRequest(f"The webhook field {key} is not an amount in minor units.", code="webhook_body_invalid") from None

    try:
        occurred = datetime.fromtimestamp(int(raw["created"]), UTC)
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("The webhook has no valid 'created' timestamp.", code="webhook_body_invalid") from None
    return PspEvent(
        event_id=str(raw["id"]),
        type=EVENT_TYPES.get(str(raw["type"]), EventType.UNKNOWN),
        raw_type=str(raw["type"]),
        occurred_at=occurred,
        psp_reference=data.get("payment"),
        amount=money("amount_minor"),
        total_captured=money("total_captured_minor"),
        total_refunded=money("total_refunded_minor"),
        link_id=data.get("link_id"),
        payout_id=data.get("payout_id"),
        data=data,
    )


def deliver(
    requests: list[WebhookRequest],
    url: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 5.0,
) -> list[int]:
    """POST signed webhooks to ``url`` (e.g. the payweave service's PSP webhook endpoint) in the
    given order; return the status codes. Duplicates and reordering are the caller's choice."""
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        return [http.post(url, content=r.body, headers=r.headers).status_code for r in requests]
    finally:
        if own:
            http.close()

"""psp_parse_webhook: signature verification (valid, tampered, wrong secret, stale, several
signatures, rotation) and normalization of real sandbox events, including ones the sandbox
delivered over HTTP."""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from payweave.hooks.errors import WebhookVerificationFailed
from payweave.hooks.models import EventType, Money, WebhookRequest
from payweave.plugins.psp_stripe_like import webhooks
from payweave.plugins.psp_stripe_like.sandbox import signature_header

SECRET = "whsec_payweave_tests_secret"  # the account fixture's secret


def signed(body: bytes, *, secrets=(SECRET,), at: int | None = None, received: int | None = None) -> WebhookRequest:
    t = int(time.time()) if at is None else at
    return WebhookRequest(
        headers={"Stripe-Signature": signature_header(body, list(secrets), t)},
        body=body,
        received_at=datetime.fromtimestamp(received if received is not None else time.time(), UTC),
    )


def event_body(api, event_type: str, reference: str | None = None) -> bytes:
    for event in api.get("/v1/events", {"type": event_type, "limit": 100})["data"]:
        obj = event["data"]["object"]
        if reference is None or reference in (obj.get("id"), obj.get("payment_intent")):
            return json.dumps(event).encode()
    raise AssertionError(f"no {event_type} event for {reference}")


def parse(psp, account, request):
    events = psp.parse_webhook(account, request)
    assert len(events) == 1
    return events[0]


def authorize(api, amount=1000):
    return api.post("/v1/payment_intents", {"amount": amount, "currency": "eur", "payment_method": "pm_card_visa",
                                            "confirm": True, "capture_method": "manual"})  # fmt: skip


# ------------------------------------------------------------------------------------ signatures
def test_valid_signature_is_accepted_and_every_flaw_refused(psp, account, api):
    pi = authorize(api)
    body = event_body(api, "payment_intent.amount_capturable_updated", pi["id"])
    now = int(time.time())
    assert parse(psp, account, signed(body)).type is EventType.AUTHORIZED

    tampered = body.replace(b'"amount": 1000', b'"amount": 9000')
    assert tampered != body
    bad_requests = {
        "tampered body": WebhookRequest(headers=signed(body).headers, body=tampered, received_at=datetime.now(UTC)),
        "wrong secret": signed(body, secrets=("whsec_someone_else",)),
        "stale timestamp": signed(body, at=now - 301, received=now),
        "too far ahead": signed(body, at=now + 301, received=now),
        "no header": WebhookRequest(headers={}, body=body, received_at=datetime.now(UTC)),
        "no timestamp": WebhookRequest(headers={"stripe-signature": "v1=" + "0" * 64}, body=body, received_at=datetime.now(UTC)),
        "no v1": WebhookRequest(headers={"stripe-signature": f"t={now},v0={webhooks.compute_signature(body, SECRET, now)}"},
                                body=body, received_at=datetime.now(UTC)),
        "bad timestamp": WebhookRequest(headers={"stripe-signature": f"t=abc,v1={'0' * 64}"}, body=body,
                                        received_at=datetime.now(UTC)),
    }  # fmt: skip
    for name, request in bad_requests.items():
        with pytest.raises(WebhookVerificationFailed) as excinfo:
            psp.parse_webhook(account, request)
        assert excinfo.value.code == "webhook_signature_invalid", name
    # within tolerance on both sides is fine
    assert parse(psp, account, signed(body, at=now - 299, received=now)).event_id
    assert parse(psp, account, signed(body, at=now + 299, received=now)).event_id


def test_several_signatures_any_match_counts(psp, account, api):
    pi = authorize(api)
    body = event_body(api, "payment_intent.amount_capturable_updated", pi["id"])
    both = signed(body, secrets=("whsec_old_secret", SECRET))
    assert both.headers["stripe-signature"].count("v1=") == 2
    assert parse(psp, account, both).psp_reference == pi["id"]
    with pytest.raises(WebhookVerificationFailed):
        psp.parse_webhook(account, signed(body, secrets=("whsec_a", "whsec_b")))


def test_rotated_secrets_are_accepted(psp, account_factory, sandbox, api):
    rotated = account_factory(sandbox.url, webhook_secret=SecretStr("whsec_new"),
                              webhook_secrets_previous="whsec_retired,whsec_older")  # fmt: skip
    pi = authorize(api)
    body = event_body(api, "payment_intent.amount_capturable_updated", pi["id"])
    for secret in ("whsec_new", "whsec_older"):
        assert parse(psp, rotated, signed(body, secrets=(secret,))).psp_reference == pi["id"]
    with pytest.raises(WebhookVerificationFailed):
        psp.parse_webhook(rotated, signed(body, secrets=(SECRET,)))


def test_signature_made_by_the_official_library_verifies():
    body = b'{"id": "evt_x"}'
    now = int(time.time())
    official = stripe.WebhookSignature._compute_signature(f"{now}.{body.decode()}", SECRET)
    assert webhooks.verify(body, f"t={now},v1={official}", [SECRET], tolerance=300, now=now) == now


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), secret=st.text(min_size=1, max_size=40), flip=st.integers(min_value=0))
def test_any_change_to_the_body_breaks_the_signature(body, secret, flip):
    now = 1_800_000_000
    header = signature_header(body, [secret], now)
    assert webhooks.verify(body, header, [secret], tolerance=300, now=now) == now
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        with pytest.raises(WebhookVerificationFailed):
            webhooks.verify(changed, header, [secret], tolerance=300, now=now)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_headers_never_crash_the_verifier(header):
    try:
        webhooks.verify(b"{}", header, ["whsec_x"], tolerance=300, now=time.time())
    except WebhookVerificationFailed:
        pass
    else:  # only a real signature could pass
        raise AssertionError(f"accepted {header!r}")


def test_a_signed_body_that_is_not_an_event_is_refused(psp, account):
    from payweave.hooks.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        psp.parse_webhook(account, signed(b'{"hello": "world"}'))


# ------------------------------------------------------------------------------------ normalization
def test_payment_events_normalize(psp, account, api):
    pi = authorize(api, 1000)
    api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 700})
    api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 200})
    api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 100})
    captured = parse(psp, account, signed(event_body(api, "payment_intent.succeeded", pi["id"])))
    assert (captured.type, captured.psp_reference) == (EventType.CAPTURED, pi["id"])
    assert captured.amount == captured.total_captured == Money.of("7.00", "EUR")
    refunded = parse(psp, account, signed(event_body(api, "charge.refunded", pi["id"])))  # newest: the second refund
    assert refunded.type is EventType.REFUNDED and refunded.psp_reference == pi["id"]
    assert refunded.amount == Money.of("1.00", "EUR") and refunded.total_refunded == Money.of("3.00", "EUR")
    assert refunded.total_captured == Money.of("7.00", "EUR")

    voided_pi = authorize(api)
    api.post(f"/v1/payment_intents/{voided_pi['id']}/cancel")
    assert parse(psp, account, signed(event_body(api, "payment_intent.canceled", voided_pi["id"]))).type is EventType.VOIDED
    release = parse(psp, account, signed(event_body(api, "charge.refunded", voided_pi["id"])))
    assert (release.type, release.psp_reference) == (EventType.VOIDED, voided_pi["id"])

    expiring = authorize(api)
    api.control("/clock", {"advance_seconds": 8 * 86_400})
    expired = parse(psp, account, signed(event_body(api, "charge.expired", expiring["id"])))
    assert (expired.type, expired.psp_reference) == (EventType.EXPIRED, expiring["id"])
    canceled = parse(psp, account, signed(event_body(api, "payment_intent.canceled", expiring["id"])))
    assert canceled.type is EventType.EXPIRED

    api.call("POST", "/v1/payment_intents", {"amount": 500, "currency": "eur", "confirm": True,
                                             "payment_method": "pm_card_chargeDeclinedInsufficientFunds"})  # fmt: skip
    failed = parse(psp, account, signed(event_body(api, "payment_intent.payment_failed")))
    assert failed.type is EventType.PAYMENT_FAILED and failed.data["decline_code"] == "insufficient_funds"
    assert failed.occurred_at.tzinfo is not None


def test_link_and_payout_events_normalize(psp, account, api):
    session = api.post("/v1/checkout/sessions", {
        "mode": "payment", "success_url": "https://shop.test/ok", "client_reference_id": "T-1",
        "line_items": [{"price_data": {"currency": "eur", "unit_amount": 4200, "product_data": {"name": "Tent"}}, "quantity": 1}],
    })  # fmt: skip
    paid = api.control(f"/checkout/{session['id']}/complete", {})
    completed = parse(psp, account, signed(event_body(api, "checkout.session.completed", session["id"])))
    assert (completed.type, completed.link_id) == (EventType.LINK_COMPLETED, session["id"])
    assert completed.psp_reference == paid["checkout_session"]["payment_intent"]
    assert completed.amount == Money.of("42.00", "EUR") and completed.data["client_reference_id"] == "T-1"

    other = api.post("/v1/checkout/sessions", {
        "mode": "payment", "success_url": "https://shop.test/ok",
        "line_items": [{"price_data": {"currency": "eur", "unit_amount": 100, "product_data": {"name": "X"}}, "quantity": 1}],
    })  # fmt: skip
    api.post(f"/v1/checkout/sessions/{other['id']}/expire")
    expired = parse(psp, account, signed(event_body(api, "checkout.session.expired", other["id"])))
    assert (expired.type, expired.link_id) == (EventType.LINK_EXPIRED, other["id"])

    api.control("/clock", {"advance_seconds": 2 * 86_400})
    payout = api.control("/payouts/run", {"outcome": "failed", "failure_code": "no_account"})["payouts"][0]
    failed = parse(psp, account, signed(event_body(api, "payout.failed", payout["id"])))
    assert (failed.type, failed.payout_id, failed.data["failure_code"]) == (EventType.PAYOUT_FAILED, payout["id"], "no_account")
    paid_payout = api.control("/payouts/run")["payouts"][0]
    event = parse(psp, account, signed(event_body(api, "payout.paid", paid_payout["id"])))
    assert (event.type, event.payout_id) == (EventType.PAYOUT_PAID, paid_payout["id"])
    assert event.amount == Money.from_minor(paid_payout["amount"], "EUR")

    unknown = parse(psp, account, signed(event_body(api, "payout.created", paid_payout["id"])))
    assert (unknown.type, unknown.raw_type, unknown.psp_reference) == (EventType.UNKNOWN, "payout.created", None)


def test_events_the_sandbox_delivered_over_http_parse(psp, account_factory, sandbox, api, receiver):
    endpoint = api.post("/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["payment_intent.succeeded"]})
    receiving = account_factory(sandbox.url, webhook_secret=SecretStr(endpoint["secret"]))
    pi = api.post("/v1/payment_intents", {"amount": 1234, "currency": "eur", "payment_method": "pm_card_visa",
                                          "confirm": True, "capture_method": "automatic"}, idempotency_key=str(uuid.uuid4()))  # fmt: skip
    assert api.control("/webhooks/flush")["delivered"] == 1
    headers, body = receiver.requests[0]
    request = WebhookRequest(headers=headers, body=body, received_at=datetime.now(UTC))
    event = parse(psp, receiving, request)
    assert (event.type, event.psp_reference, event.amount) == (EventType.CAPTURED, pi["id"], Money.of("12.34", "EUR"))
    assert event.event_id == json.loads(body)["id"]
    with pytest.raises(WebhookVerificationFailed):  # another endpoint's secret does not verify it
        psp.parse_webhook(account_factory(sandbox.url), request)

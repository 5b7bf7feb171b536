"""The official ``stripe`` package, pointed at the sandbox, works unchanged."""
from __future__ import annotations

import time

import pytest
import stripe

from payweave.plugins.psp_stripe_like.sandbox import signature_header


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient("sk_test_official", base_addresses={"api": sandbox.url}, max_network_retries=2)


def test_create_capture_partly_cancel_and_refund(client, api):
    pi = client.v1.payment_intents.create(
        params={"amount": 5000, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
                "capture_method": "manual", "metadata": {"order_id": "SO-42"}}  # fmt: skip
    )
    assert isinstance(pi, stripe.PaymentIntent)
    assert (pi.status, pi.amount_capturable, pi.metadata["order_id"]) == ("requires_capture", 5000, "SO-42")

    captured = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 3000})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 3000, 0)

    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1200, "reason": "requested_by_customer"})
    assert isinstance(refund, stripe.Refund)
    assert (refund.status, refund.amount, refund.payment_intent) == ("succeeded", 1200, pi.id)
    charge = client.v1.charges.retrieve(captured.latest_charge)
    assert (charge.amount_captured, charge.amount_refunded, charge.refunded) == (3000, 1200, False)

    other = client.v1.payment_intents.create(
        params={"amount": 800, "currency": "eur", "payment_method": "pm_card_mastercard", "confirm": True,
                "capture_method": "manual"}  # fmt: skip
    )
    canceled = client.v1.payment_intents.cancel(other.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")

    listed = client.v1.payment_intents.list(params={"limit": 1, "expand": ["data.latest_charge"]})
    assert listed.has_more is True
    assert isinstance(listed.data[0].latest_charge, stripe.Charge)
    assert [e["op"] for e in api.journal(payment_intent=pi.id)].count("capture") == 1


def test_errors_map_to_the_official_exceptions(client, sandbox):
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "eur", "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
    assert declined.value.http_status == 402
    assert declined.value.code == "card_declined"
    assert declined.value.error.decline_code == "generic_decline"
    with pytest.raises(stripe.InvalidRequestError) as invalid:
        client.v1.payment_intents.create(params={"amount": 1000})
    assert invalid.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve("pi_does_not_exist")
    bad_key = stripe.StripeClient("sk_live_wrong", base_addresses={"api": sandbox.url})
    with pytest.raises(stripe.AuthenticationError):
        bad_key.v1.payment_intents.list()
    opts = {"idempotency_key": "official-1"}
    client.v1.customers.create(params={"email": "a@example.test"}, options=opts)
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "b@example.test"}, options=opts)


def test_official_client_retries_an_injected_503_with_the_same_key(client, api):
    api.control("/faults", {"mode": "error", "status": 503, "count": 1, "path": "/v1/payment_intents", "method": "POST"})
    pi = client.v1.payment_intents.create(
        params={"amount": 100, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert pi.status == "succeeded"
    assert len(api.get("/v1/payment_intents")["data"]) == 1


def test_official_webhook_helper_accepts_sandbox_signatures():
    body = '{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    header = signature_header(body.encode(), ["whsec_a", "whsec_b"], int(time.time()))
    assert stripe.Webhook.construct_event(body, header, "whsec_b")["id"] == "evt_1"

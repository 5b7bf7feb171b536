"""Sandbox flows beyond a single payment: hosted checkout, saved cards and mandates, fees,
balance and payouts, events, and signed webhook delivery with retries."""
from __future__ import annotations

import json
import time

import pytest
import stripe

from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings, WebhookEndpointConfig

DAY = 86_400


def session_params(**extra):
    return {
        "mode": "payment",
        "line_items": [
            {"price_data": {"currency": "eur", "unit_amount": 1500, "product_data": {"name": "Bike bell"}}, "quantity": 2},
            {"price_data": {"currency": "eur", "unit_amount": 495, "product_data": {"name": "Shipping"}}, "quantity": 1},
        ],
        "success_url": "https://shop.test/ok?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.test/cancel",
        "client_reference_id": "SO-1001",
        "metadata": {"order": "SO-1001"},
        **extra,
    }


# ------------------------------------------------------------------------------------ checkout
def test_checkout_session_completes_through_the_hosted_page(api):
    session = api.post("/v1/checkout/sessions", session_params(payment_intent_data={"capture_method": "manual"}))
    assert session["id"].startswith("cs_test_") and session["status"] == "open"
    assert session["amount_total"] == 3495 and session["payment_intent"] is None
    assert session["url"].endswith(f"/_sandbox/checkout/{session['id']}")
    assert session["expires_at"] == session["created"] + DAY
    page = api.http.get(session["url"].replace(api.base_url, ""))
    assert page.status_code == 200 and "34.95 EUR" in page.text
    items = api.get(f"/v1/checkout/sessions/{session['id']}/line_items")
    assert [(i["description"], i["amount_total"]) for i in items["data"]] == [("Bike bell", 3000), ("Shipping", 495)]

    back = api.control(f"/checkout/{session['id']}/cancel")
    assert back["redirect_url"] == "https://shop.test/cancel"
    declined = api.http.post(f"/_sandbox/checkout/{session['id']}/complete", json={"payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and declined.json()["redirect_url"] is None
    paid = api.control(f"/checkout/{session['id']}/complete", {"payment_method": "pm_card_visa"})
    assert paid["redirect_url"] == f"https://shop.test/ok?session={session['id']}"
    done = api.get(f"/v1/checkout/sessions/{session['id']}", {"expand": ["payment_intent"]})
    assert done["status"] == "complete" and done["payment_status"] == "unpaid"  # authorized, not captured
    assert done["payment_intent"]["status"] == "requires_capture" and done["payment_intent"]["amount"] == 3495
    completed = api.get("/v1/events", {"type": "checkout.session.completed"})["data"][0]
    assert completed["data"]["object"]["id"] == session["id"]
    again = api.http.post(f"/_sandbox/checkout/{session['id']}/complete", json={})
    assert again.status_code == 400


def test_checkout_session_form_post_redirects_like_a_browser(api):
    session = api.post("/v1/checkout/sessions", session_params())
    response = api.http.post(f"/_sandbox/checkout/{session['id']}/complete",
                             data={"payment_method": "pm_card_visa", "redirect": "true"})  # fmt: skip
    assert response.status_code == 303
    assert response.headers["location"] == f"https://shop.test/ok?session={session['id']}"
    assert api.get(f"/v1/checkout/sessions/{session['id']}")["payment_status"] == "paid"


def test_checkout_session_expires_by_call_or_by_clock(api):
    first = api.post("/v1/checkout/sessions", session_params())
    expired = api.post(f"/v1/checkout/sessions/{first['id']}/expire")
    assert expired["status"] == "expired" and expired["url"] is None
    assert api.call("POST", f"/v1/checkout/sessions/{first['id']}/expire").status_code == 400
    second = api.post("/v1/checkout/sessions", session_params())
    api.control("/clock", {"advance_seconds": DAY})
    assert api.get(f"/v1/checkout/sessions/{second['id']}")["status"] == "expired"
    assert api.get("/v1/events", {"type": "checkout.session.expired"})["data"][0]["data"]["object"]["id"] == second["id"]


def test_checkout_session_validation(api):
    mixed = session_params()
    mixed["line_items"][1]["price_data"]["currency"] = "usd"
    assert api.call("POST", "/v1/checkout/sessions", mixed).status_code == 400
    no_name = session_params()
    del no_name["line_items"][0]["price_data"]["product_data"]["name"]
    response = api.call("POST", "/v1/checkout/sessions", no_name)
    assert response.json()["error"]["param"] == "line_items[0][price_data][product_data][name]"
    assert api.call("POST", "/v1/checkout/sessions", session_params(success_url="not a url")).status_code == 400


# ------------------------------------------------------------------------------------ saved cards
def test_setup_intent_creates_a_mandate_for_off_session_charges(api):
    customer = api.post("/v1/customers", {"email": "anna@example.test", "metadata": {"payweave_customer_id": "C-1"}})
    assert customer["id"].startswith("cus_")
    seti = api.post("/v1/setup_intents", {"customer": customer["id"], "payment_method": "pm_card_visa", "confirm": True,
                                          "usage": "off_session"})  # fmt: skip
    assert seti["status"] == "succeeded" and seti["mandate"].startswith("mandate_")
    mandate = api.get(f"/v1/mandates/{seti['mandate']}")
    assert (mandate["status"], mandate["type"], mandate["payment_method"]) == ("active", "multi_use", seti["payment_method"])
    pms = api.get(f"/v1/customers/{customer['id']}/payment_methods")
    assert [pm["id"] for pm in pms["data"]] == [seti["payment_method"]]
    charge = api.post("/v1/payment_intents", {"amount": 2500, "currency": "eur", "customer": customer["id"],
                                              "payment_method": seti["payment_method"], "mandate": seti["mandate"],
                                              "off_session": True, "confirm": True})  # fmt: skip
    assert charge["status"] == "succeeded"
    found = api.get("/v1/customers/search", {"query": "metadata['payweave_customer_id']:'C-1'"})
    assert [c["id"] for c in found["data"]] == [customer["id"]]
    assert api.get("/v1/customers/search", {"query": "email:'nobody@example.test'"})["data"] == []


def test_saved_card_rules(api):
    one = api.post("/v1/customers", {})
    two = api.post("/v1/customers", {})
    pm = api.post("/v1/payment_methods/pm_card_visa/attach", {"customer": one["id"]})
    wrong_customer = api.call("POST", "/v1/payment_intents", {"amount": 100, "currency": "eur", "customer": two["id"],
                                                              "payment_method": pm["id"], "confirm": True})  # fmt: skip
    assert wrong_customer.status_code == 400 and "different Customer" in wrong_customer.json()["error"]["message"]
    declined = api.call("POST", "/v1/payment_methods/pm_card_chargeDeclined/attach", {"customer": one["id"]})
    assert declined.status_code == 402
    # a card used once without a customer cannot be used again
    once = api.post("/v1/payment_intents", {"amount": 100, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True})
    reuse = api.call("POST", "/v1/payment_intents", {"amount": 100, "currency": "eur", "confirm": True,
                                                     "payment_method": once["payment_method"]})  # fmt: skip
    assert reuse.status_code == 400 and "may not be used again" in reuse.json()["error"]["message"]
    # a card that saves fine but fails every charge (4000 0000 0000 0341)
    seti = api.post("/v1/setup_intents", {"customer": one["id"], "payment_method": "pm_card_chargeCustomerFail", "confirm": True})
    fails = api.call("POST", "/v1/payment_intents", {"amount": 100, "currency": "eur", "customer": one["id"], "confirm": True,
                                                     "payment_method": seti["payment_method"], "off_session": True})  # fmt: skip
    assert fails.status_code == 402
    detached = api.post(f"/v1/payment_methods/{seti['payment_method']}/detach")
    assert detached["customer"] is None
    assert api.get(f"/v1/mandates/{seti['mandate']}")["status"] == "inactive"


def test_setup_on_a_3ds_card_needs_authentication_then_charges_off_session(api):
    customer = api.post("/v1/customers", {})
    seti = api.post("/v1/setup_intents", {"customer": customer["id"], "confirm": True,
                                          "payment_method": "pm_card_authenticationRequiredOnSetup"})  # fmt: skip
    assert seti["status"] == "requires_action"
    assert api.control(f"/authenticate/{seti['id']}", {"outcome": "succeed"})["status"] == "succeeded"
    charge = api.post("/v1/payment_intents", {"amount": 100, "currency": "eur", "customer": customer["id"],
                                              "payment_method": seti["payment_method"], "off_session": True, "confirm": True})  # fmt: skip
    assert charge["status"] == "succeeded"


# ------------------------------------------------------------------------------------ money
def test_fees_balance_and_payouts_reconcile(api):
    pi = api.post("/v1/payment_intents", {"amount": 10_000, "currency": "eur", "payment_method": "pm_card_visa",
                                          "confirm": True, "capture_method": "manual"})  # fmt: skip
    api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 8_000})
    charge = api.get(f"/v1/charges/{pi['latest_charge']}", {"expand": ["balance_transaction"]})
    txn = charge["balance_transaction"]
    # 2.9 % of 80.00 = 2.32, + 0.30 = 2.62
    assert (txn["type"], txn["amount"], txn["fee"], txn["net"], txn["status"]) == ("charge", 8000, 262, 7738, "pending")
    assert txn["fee_details"][0]["type"] == "stripe_fee"
    refund = api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 1_000})
    balance = api.get("/v1/balance")
    assert balance["pending"] == [{"amount": 7738, "currency": "eur", "source_types": {"card": 7738}}]
    assert balance["available"][0]["amount"] == -1000
    assert api.control("/payouts/run")["payouts"] == []  # refund alone is negative: nothing to pay
    api.control("/clock", {"advance_seconds": 2 * DAY})
    payouts = api.control("/payouts/run")["payouts"]
    assert len(payouts) == 1
    payout = payouts[0]
    assert (payout["amount"], payout["currency"], payout["status"]) == (6738, "eur", "paid")
    assert payout["reconciliation_status"] == "completed"
    lines = api.get("/v1/balance_transactions", {"payout": payout["id"], "expand": ["data.source"]})["data"]
    by_type = {line["type"]: line for line in lines}
    assert set(by_type) == {"charge", "refund", "payout"}
    assert by_type["charge"]["source"]["payment_intent"] == pi["id"]
    assert by_type["refund"]["source"]["id"] == refund["id"]
    assert sum(line["net"] for line in lines if line["type"] != "payout") == payout["amount"]
    assert by_type["payout"]["amount"] == -payout["amount"]
    assert api.get("/v1/balance")["available"] == [{"amount": 0, "currency": "eur", "source_types": {"card": 0}}]
    listed = api.get("/v1/payouts")
    assert [p["id"] for p in listed["data"]] == [payout["id"]]
    assert [e["type"] for e in api.get("/v1/events", {"type": "payout.paid"})["data"]] == ["payout.paid"]


@pytest.mark.parametrize(
    "sandbox_settings",
    [SandboxSettings(webhook_delivery="manual", fee_percent_bps=140, fee_fixed=25, balance_available_after_seconds=0)],
)
def test_failed_payout_returns_the_funds_for_the_next_run(api):
    api.post("/v1/payment_intents", {"amount": 333, "currency": "jpy", "payment_method": "pm_card_visa", "confirm": True,
                                     "capture_method": "automatic"})  # fmt: skip
    failed = api.control("/payouts/run", {"outcome": "failed", "failure_code": "account_closed"})["payouts"][0]
    # 1.4 % of 333 = 4.662 -> 5 (half up), + 25 = 30 fee; net 303
    assert (failed["amount"], failed["status"], failed["failure_code"]) == (303, "failed", "account_closed")
    assert failed["failure_balance_transaction"].startswith("txn_")
    assert api.get("/v1/events", {"type": "payout.failed"})["data"][0]["data"]["object"]["id"] == failed["id"]
    retried = api.control("/payouts/run")["payouts"][0]
    assert retried["amount"] == 303 and retried["status"] == "paid"
    in_transit = api.post("/v1/payment_intents", {"amount": 1000, "currency": "jpy", "payment_method": "pm_card_visa",
                                                  "confirm": True, "capture_method": "automatic"})  # fmt: skip
    assert in_transit["status"] == "succeeded"
    pending = api.control("/payouts/run", {"outcome": "in_transit"})["payouts"][0]
    assert pending["status"] == "in_transit"
    api.control("/clock", {"advance_seconds": 2 * DAY})
    assert api.get(f"/v1/payouts/{pending['id']}")["status"] == "paid"
    created_after = api.get("/v1/payouts", {"created": {"gte": pending["created"]}})
    assert pending["id"] in [p["id"] for p in created_after["data"]]


# ------------------------------------------------------------------------------------ webhooks
@pytest.fixture
def delivering_sandbox(receiver):
    from payweave.core.testing.loopback import LoopbackServer
    from payweave.plugins.psp_stripe_like.sandbox import create_app

    settings = SandboxSettings(
        webhook_endpoints=(WebhookEndpointConfig(receiver.url, "whsec_delivery", ("payment_intent.succeeded",)),),
        webhook_backoff_seconds=0.02,
        webhook_max_attempts=3,
    )
    with LoopbackServer(create_app(settings)) as server:
        yield server


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_background_delivery_is_signed_and_retried_until_2xx(delivering_sandbox, receiver, api_factory):
    receiver.fail_first = 2
    api = api_factory(delivering_sandbox.url)
    pi = api.post("/v1/payment_intents", {"amount": 1000, "currency": "eur", "payment_method": "pm_card_visa",
                                          "confirm": True, "capture_method": "automatic"})  # fmt: skip
    wait_for(lambda: len(receiver.requests) == 3)
    statuses = api.control("/webhooks/deliveries", method="GET")
    assert statuses["stats"]["delivered"] == 1
    assert [h["status"] for h in statuses["data"][0]["history"]] == [500, 500, 200]
    headers, body = receiver.requests[-1]
    # the official library accepts the sandbox's signature
    event = stripe.Webhook.construct_event(body.decode(), headers["stripe-signature"], "whsec_delivery")
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["id"] == pi["id"]
    assert all(r[1] == body for r in receiver.requests)  # the same payload each time
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode(), headers["stripe-signature"], "whsec_other")
    assert api.get(f"/v1/events/{event['id']}")["pending_webhooks"] == 0


def test_manual_delivery_flushes_and_gives_up_after_max_attempts(api, receiver, sandbox):
    receiver.fail_first = 100
    endpoint = api.post("/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["*"]})
    assert endpoint["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/v1/webhook_endpoints/{endpoint['id']}")
    api.post("/v1/customers", {"email": "x@example.test"})
    assert receiver.requests == []  # manual mode: nothing until flushed
    stats = api.control("/webhooks/flush", {"rounds": 10})
    assert stats == {"pending": 0, "in_progress": 0, "delivered": 0, "failed": 1}
    assert len(receiver.requests) == 4  # webhook_max_attempts default
    event = json.loads(receiver.requests[0][1])
    assert event["type"] == "customer.created" and event["pending_webhooks"] == 1
    assert api.get(f"/v1/events/{event['id']}")["pending_webhooks"] == 1


def test_events_list_filters_and_event_shape(api):
    api.post("/v1/payment_intents", {"amount": 100, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
                                     "capture_method": "automatic"}, idempotency_key="evt-key")  # fmt: skip
    events = api.get("/v1/events", {"types": ["payment_intent.succeeded", "charge.succeeded"]})["data"]
    assert [e["type"] for e in events] == ["payment_intent.succeeded", "charge.succeeded"]
    event = events[0]
    assert event["object"] == "event" and event["id"].startswith("evt_") and event["livemode"] is False
    assert event["request"]["idempotency_key"] == "evt-key" and event["request"]["id"].startswith("req_")
    assert event["api_version"]
    assert [e["type"] for e in api.get("/v1/events", {"type": "payment_intent.*"})["data"]] == [
        "payment_intent.succeeded", "payment_intent.created"]


# ------------------------------------------------------------------------------------ odds and ends
def test_customer_crud_and_setup_mode_checkout(api):
    customer = api.post("/v1/customers", {"email": "old@example.test", "payment_method": "pm_card_visa",
                                          "invoice_settings": {"default_payment_method": "pm_card_visa"}})  # fmt: skip
    default_pm = customer["invoice_settings"]["default_payment_method"]
    assert default_pm.startswith("pm_") and api.get(f"/v1/payment_methods/{default_pm}")["customer"] == customer["id"]
    updated = api.post(f"/v1/customers/{customer['id']}", {"email": "new@example.test", "metadata": {"tier": "gold"}})
    assert (updated["email"], updated["metadata"]) == ("new@example.test", {"tier": "gold"})
    assert api.get("/v1/customers", {"email": "new@example.test"})["data"][0]["id"] == customer["id"]
    session = api.post("/v1/checkout/sessions", {"mode": "setup", "customer": customer["id"], "currency": "eur",
                                                 "success_url": "https://shop.test/saved"})  # fmt: skip
    done = api.control(f"/checkout/{session['id']}/complete", {"payment_method": "pm_card_mastercard"})
    seti = api.get(f"/v1/setup_intents/{done['checkout_session']['setup_intent']}")
    assert seti["status"] == "succeeded" and seti["mandate"].startswith("mandate_")
    deleted = api.call("DELETE", f"/v1/customers/{customer['id']}")
    assert deleted.json() == {"id": customer["id"], "object": "customer", "deleted": True}
    assert api.get(f"/v1/customers/{customer['id']}")["deleted"] is True
    gone = api.call("POST", "/v1/payment_intents", {"amount": 100, "currency": "eur", "customer": customer["id"]})
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "resource_missing"


def test_failed_authentication_and_cancelled_setup(api):
    pi = api.post("/v1/payment_intents", {"amount": 1000, "currency": "eur", "confirm": True,
                                          "payment_method": "pm_card_authenticationRequired",
                                          "return_url": "https://shop.test/3ds"})  # fmt: skip
    page = api.http.get(f"/_sandbox/authenticate/{pi['id']}")
    assert page.status_code == 200 and pi["id"] in page.text
    redirected = api.http.post(f"/_sandbox/authenticate/{pi['id']}", data={"outcome": "fail", "redirect": "true"})
    assert redirected.status_code == 303
    assert redirected.headers["location"] == f"https://shop.test/3ds?payment_intent={pi['id']}"
    failed = api.get(f"/v1/payment_intents/{pi['id']}")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    seti = api.post("/v1/setup_intents", {"usage": "on_session"})
    canceled = api.post(f"/v1/setup_intents/{seti['id']}/cancel", {"cancellation_reason": "abandoned"})
    assert canceled["status"] == "canceled"
    assert api.call("POST", f"/v1/setup_intents/{seti['id']}/confirm", {"payment_method": "pm_card_visa"}).status_code == 400


def test_webhook_endpoint_management(api):
    endpoint = api.post("/v1/webhook_endpoints", {"url": "https://hooks.test/a", "enabled_events": ["charge.refunded"]})
    disabled = api.post(f"/v1/webhook_endpoints/{endpoint['id']}", {"disabled": True, "url": "https://hooks.test/b"})
    assert (disabled["status"], disabled["url"]) == ("disabled", "https://hooks.test/b")
    assert [e["id"] for e in api.get("/v1/webhook_endpoints")["data"]] == [endpoint["id"]]
    assert api.call("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}").json()["deleted"] is True
    assert api.call("POST", "/v1/webhook_endpoints", {"url": "ftp://x", "enabled_events": ["*"]}).status_code == 400


def test_reset_forgets_everything(api):
    api.post("/v1/customers", {})
    api.control("/faults", {"mode": "error", "path": "/v1/nothing"})
    api.control("/clock", {"advance_seconds": 10 * DAY})
    api.control("/reset")
    assert api.get("/v1/customers")["data"] == [] and api.get("/v1/events")["data"] == []
    assert api.control("/faults", method="GET")["data"] == []
    assert api.control("/clock", method="GET")["now"] < time.time() + DAY

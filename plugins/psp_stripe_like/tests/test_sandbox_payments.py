"""The sandbox's PaymentIntent, Charge and Refund behaviour over real HTTP."""
from __future__ import annotations

import base64

import pytest

from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings

DAY = 86_400


def authorize(api, amount=1000, currency="eur", pm="pm_card_visa", **extra):
    return api.post(
        "/v1/payment_intents",
        {"amount": amount, "currency": currency, "payment_method": pm, "confirm": True, "capture_method": "manual", **extra},
    )


# ------------------------------------------------------------------------------------ auth
def test_bearer_and_basic_auth_are_accepted_anything_else_is_401(api):
    assert api.call("GET", "/v1/payment_intents").status_code == 200
    basic = base64.b64encode(b"sk_test_basic:").decode()
    assert api.http.get("/v1/payment_intents", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    missing = api.http.get("/v1/payment_intents")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in missing.json()["error"]["message"]
    wrong = api.http.get("/v1/payment_intents", headers={"Authorization": "Bearer pk_test_publishable"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "api_key_invalid"


@pytest.mark.parametrize("sandbox_settings", [SandboxSettings(api_keys=("sk_test_only",), webhook_delivery="manual")])
def test_configured_keys_only(api):
    assert api.call("GET", "/v1/charges").status_code == 401
    api.api_key = "sk_test_only"
    assert api.call("GET", "/v1/charges").status_code == 200


def test_unknown_url_and_json_bodies_are_refused_like_stripe(api):
    response = api.call("GET", "/v1/nothing_here")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing_here)")
    response = api.http.post(
        "/v1/payment_intents", json={"amount": 100}, headers={"Authorization": "Bearer sk_test_x"}
    )
    assert response.status_code == 400
    assert "url-encoded" in response.json()["error"]["message"]


# ------------------------------------------------------------------------------------ lifecycle
def test_manual_capture_authorizes_and_reports_capture_before(api, sandbox):
    pi = authorize(api, metadata={"order_id": "42"}, expand=["latest_charge"])
    assert pi["object"] == "payment_intent"
    assert pi["status"] == "requires_capture"
    assert (pi["amount"], pi["amount_capturable"], pi["amount_received"]) == (1000, 1000, 0)
    assert pi["currency"] == "eur" and pi["metadata"] == {"order_id": "42"}
    assert pi["payment_method"].startswith("pm_") and pi["payment_method"] != "pm_card_visa"
    charge = pi["latest_charge"]
    assert charge["id"].startswith("ch_") and charge["captured"] is False and charge["paid"] is True
    card = charge["payment_method_details"]["card"]
    assert card["brand"] == "visa" and card["last4"] == "4242"
    assert card["capture_before"] == charge["created"] + 7 * DAY
    events = [e["type"] for e in api.get("/v1/events", {"limit": 10})["data"]]
    assert events[:3] == ["payment_intent.amount_capturable_updated", "charge.succeeded", "payment_intent.created"]


def test_partial_capture_releases_the_rest_and_only_once(api):
    pi = authorize(api, amount=1000)
    captured = api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 600})
    assert captured["status"] == "succeeded"
    assert (captured["amount_received"], captured["amount_capturable"]) == (600, 0)
    charge = api.get(f"/v1/charges/{captured['latest_charge']}")
    assert (charge["amount_captured"], charge["captured"]) == (600, True)
    again = api.call("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 100})
    assert again.status_code == 400
    error = again.json()["error"]
    assert error["code"] == "payment_intent_unexpected_state"
    assert error["payment_intent"]["status"] == "succeeded"
    ops = [e["op"] for e in api.journal(payment_intent=pi["id"])]
    assert ops.count("capture") == 1 and ops.count("release") == 1


def test_capture_more_than_capturable_is_refused(api):
    pi = authorize(api, amount=500)
    response = api.call("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 501})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_too_large"
    assert api.get(f"/v1/payment_intents/{pi['id']}")["status"] == "requires_capture"


def test_automatic_capture_and_async_balance_transaction(api):
    sync = api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa",
                                            "confirm": True, "capture_method": "automatic", "expand": ["latest_charge"]})  # fmt: skip
    assert sync["status"] == "succeeded" and sync["amount_received"] == 2000
    assert sync["latest_charge"]["balance_transaction"].startswith("txn_")
    default = api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa",
                                               "confirm": True, "expand": ["latest_charge"]})  # fmt: skip
    assert default["capture_method"] == "automatic_async"
    assert default["latest_charge"]["balance_transaction"] is None  # arrives after the response
    charge = api.get(f"/v1/charges/{default['latest_charge']['id']}")
    assert charge["balance_transaction"].startswith("txn_")
    updated = api.get("/v1/events", {"type": "charge.updated"})["data"][0]
    assert updated["data"]["previous_attributes"] == {"balance_transaction": None}


def test_cancel_releases_hold_and_blocks_further_operations(api):
    pi = authorize(api, amount=700)
    canceled = api.post(f"/v1/payment_intents/{pi['id']}/cancel", {"cancellation_reason": "requested_by_customer"})
    assert canceled["status"] == "canceled"
    assert canceled["cancellation_reason"] == "requested_by_customer"
    assert canceled["amount_capturable"] == 0 and canceled["canceled_at"] is not None
    for path in ("capture", "cancel"):
        response = api.call("POST", f"/v1/payment_intents/{pi['id']}/{path}")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "payment_intent_unexpected_state"
    bad_reason = api.call("POST", f"/v1/payment_intents/{authorize(api)['id']}/cancel", {"cancellation_reason": "bored"})
    assert bad_reason.status_code == 400 and bad_reason.json()["error"]["param"] == "cancellation_reason"


def test_declined_card_is_402_with_decline_code_and_failed_pi(api):
    response = api.call("POST", "/v1/payment_intents",
                        {"amount": 1000, "currency": "eur", "payment_method": "pm_card_chargeDeclined", "confirm": True})  # fmt: skip
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "generic_decline")
    pi = error["payment_intent"]
    assert pi["status"] == "requires_payment_method"
    assert pi["last_payment_error"]["decline_code"] == "generic_decline"
    assert api.get(f"/v1/charges/{error['charge']}")["status"] == "failed"
    funds = api.call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "eur", "confirm": True,
                                                     "payment_method": "pm_card_chargeDeclinedInsufficientFunds"})  # fmt: skip
    assert funds.json()["error"]["decline_code"] == "insufficient_funds"
    # the customer retries with another card on the same PaymentIntent
    retried = api.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})
    assert retried["status"] == "succeeded"


def test_3ds_card_needs_action_on_session_and_declines_off_session(api):
    pi = api.post("/v1/payment_intents", {"amount": 1000, "currency": "eur", "confirm": True, "capture_method": "manual",
                                          "payment_method": "pm_card_authenticationRequired", "return_url": "https://shop.test/back"})  # fmt: skip
    assert pi["status"] == "requires_action"
    assert pi["next_action"]["type"] == "redirect_to_url"
    done = api.control(f"/authenticate/{pi['id']}", {"outcome": "succeed"})
    assert done["status"] == "requires_capture"
    cus = api.post("/v1/customers", {"email": "a@b.test"})
    pm = api.post("/v1/payment_methods/pm_card_authenticationRequired/attach", {"customer": cus["id"]})
    off = api.call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "eur", "confirm": True, "off_session": True,
                                                   "customer": cus["id"], "payment_method": pm["id"]})  # fmt: skip
    assert off.status_code == 402
    assert off.json()["error"]["code"] == "authentication_required"


def test_validation_errors_name_the_parameter(api):
    cases = [
        ({"currency": "eur"}, "amount", "parameter_missing"),
        ({"amount": "ten", "currency": "eur"}, "amount", "parameter_invalid_integer"),
        ({"amount": 0, "currency": "eur"}, "amount", "parameter_invalid_integer"),
        ({"amount": 100, "currency": "xyz"}, "currency", None),
        ({"amount": 100, "currency": "eur", "capture_method": "later"}, "capture_method", None),
        ({"amount": 100, "currency": "eur", "bogus": "1"}, "bogus", "parameter_unknown"),
        ({"amount": 100, "currency": "eur", "payment_method": "pm_nope"}, "payment_method", "resource_missing"),
        ({"amount": 100, "currency": "eur", "off_session": True}, "off_session", None),
    ]
    for params, param, code in cases:
        response = api.call("POST", "/v1/payment_intents", params)
        assert response.status_code == 400, params
        error = response.json()["error"]
        assert error["param"] == param, (params, error)
        assert error.get("code") == code, (params, error)
    assert api.call("GET", "/v1/payment_intents/pi_missing").status_code == 404


def test_uppercase_currency_is_accepted_and_returned_lowercase(api):
    assert authorize(api, currency="JPY", amount=500)["currency"] == "jpy"


def test_increment_authorization(api):
    pi = authorize(api, amount=1000, payment_method_options={"card": {"request_incremental_authorization": "if_available"}})
    raised = api.post(f"/v1/payment_intents/{pi['id']}/increment_authorization", {"amount": 1500})
    assert (raised["amount"], raised["amount_capturable"]) == (1500, 1500)
    lower = api.call("POST", f"/v1/payment_intents/{pi['id']}/increment_authorization", {"amount": 1200})
    assert lower.status_code == 400
    plain = authorize(api)
    refused = api.call("POST", f"/v1/payment_intents/{plain['id']}/increment_authorization", {"amount": 2000})
    assert refused.json()["error"]["code"] == "incremental_authorization_not_available"


def test_update_amount_before_confirmation(api):
    pi = api.post("/v1/payment_intents", {"amount": 1000, "currency": "eur"})
    assert pi["status"] == "requires_payment_method"
    updated = api.post(f"/v1/payment_intents/{pi['id']}", {"amount": 1250, "metadata": {"cart": "v2"}})
    assert updated["amount"] == 1250 and updated["metadata"] == {"cart": "v2"}
    confirmed = api.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})
    assert confirmed["amount_received"] == 1250
    refused = api.call("POST", f"/v1/payment_intents/{pi['id']}", {"amount": 10})
    assert refused.status_code == 400


# ------------------------------------------------------------------------------------ expiry
def test_authorization_expires_with_the_sandbox_clock(api):
    pi = authorize(api, amount=900)
    api.control("/clock", {"advance_seconds": 7 * DAY - 60})
    assert api.get(f"/v1/payment_intents/{pi['id']}")["status"] == "requires_capture"
    api.control("/clock", {"advance_seconds": 61})
    expired = api.get(f"/v1/payment_intents/{pi['id']}", {"expand": ["latest_charge"]})
    assert expired["status"] == "canceled" and expired["cancellation_reason"] == "automatic"
    assert expired["latest_charge"]["refunded"] is True
    refund = api.get("/v1/refunds", {"payment_intent": pi["id"]})["data"][0]
    assert (refund["reason"], refund["amount"], refund["balance_transaction"]) == ("expired_uncaptured_charge", 900, None)
    types = [e["type"] for e in api.get("/v1/events", {"limit": 3})["data"]]
    assert "charge.expired" in types and "payment_intent.canceled" in types
    late = api.call("POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert late.status_code == 400


@pytest.mark.parametrize("sandbox_settings", [SandboxSettings(webhook_delivery="manual", authorization_validity_seconds=3600)])
def test_authorization_validity_is_configurable_and_visa_mit_is_shorter(api):
    pi = authorize(api, expand=["latest_charge"])
    charge = pi["latest_charge"]
    assert charge["payment_method_details"]["card"]["capture_before"] == charge["created"] + 3600
    cus = api.post("/v1/customers", {})
    seti = api.post("/v1/setup_intents", {"customer": cus["id"], "payment_method": "pm_card_visa", "confirm": True})
    mit = api.post("/v1/payment_intents", {"amount": 100, "currency": "eur", "customer": cus["id"], "confirm": True,
                                           "payment_method": seti["payment_method"], "off_session": True,
                                           "capture_method": "manual", "expand": ["latest_charge"]})  # fmt: skip
    card = mit["latest_charge"]["payment_method_details"]["card"]
    assert card["capture_before"] == mit["latest_charge"]["created"] + 4 * DAY + 18 * 3600


def test_clock_never_moves_backwards(api):
    now = api.control("/clock", method="GET")["now"]
    response = api.http.post("/_sandbox/clock", json={"set": now - 100})
    assert response.status_code == 400


# ------------------------------------------------------------------------------------ refunds
def test_refunds_partial_then_rest_then_refused(api):
    pi = authorize(api, amount=1000)
    api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 800})
    first = api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 300, "reason": "requested_by_customer",
                                     "metadata": {"credit_memo": "CM-1"}})  # fmt: skip
    assert (first["object"], first["status"], first["amount"]) == ("refund", "succeeded", 300)
    assert first["metadata"] == {"credit_memo": "CM-1"} and first["balance_transaction"].startswith("txn_")
    too_much = api.call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 501})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    rest = api.post("/v1/refunds", {"charge": pi["latest_charge"]})
    assert rest["amount"] == 500
    charge = api.get(f"/v1/charges/{pi['latest_charge']}")
    assert (charge["amount_refunded"], charge["refunded"]) == (800, True)
    again = api.call("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert again.json()["error"]["code"] == "charge_already_refunded"
    listed = api.get("/v1/refunds", {"payment_intent": pi["id"]})
    assert [r["id"] for r in listed["data"]] == [rest["id"], first["id"]]
    txn = api.get(f"/v1/balance_transactions/{first['balance_transaction']}")
    assert (txn["type"], txn["amount"], txn["fee"], txn["net"]) == ("refund", -300, 0, -300)


def test_refund_of_an_uncaptured_hold_is_refused(api):
    pi = authorize(api)
    response = api.call("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert response.status_code == 400
    assert "cancel" in response.json()["error"]["message"]
    missing = api.call("POST", "/v1/refunds", {})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "parameter_missing"


# ------------------------------------------------------------------------------------ lists
def test_lists_page_newest_first_with_starting_after_and_expand(api):
    ids = [authorize(api, amount=100 + i)["id"] for i in range(5)]
    first = api.get("/v1/payment_intents", {"limit": 2})
    assert first["object"] == "list" and first["url"] == "/v1/payment_intents" and first["has_more"] is True
    assert [p["id"] for p in first["data"]] == ids[::-1][:2]
    second = api.get("/v1/payment_intents", {"limit": 2, "starting_after": first["data"][-1]["id"]})
    assert [p["id"] for p in second["data"]] == ids[::-1][2:4]
    last = api.get("/v1/payment_intents", {"limit": 2, "starting_after": second["data"][-1]["id"]})
    assert [p["id"] for p in last["data"]] == [ids[0]] and last["has_more"] is False
    before = api.get("/v1/payment_intents", {"limit": 10, "ending_before": ids[2]})
    assert [p["id"] for p in before["data"]] == ids[::-1][:2]
    expanded = api.get("/v1/payment_intents", {"limit": 1, "expand": ["data.latest_charge"]})
    assert expanded["data"][0]["latest_charge"]["object"] == "charge"
    bad = api.call("GET", "/v1/payment_intents", {"expand": ["data.amount"]})
    assert bad.status_code == 400
    assert api.call("GET", "/v1/payment_intents", {"limit": 101}).status_code == 400

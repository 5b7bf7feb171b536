"""Idempotency and fault injection in the sandbox, exactly as the reference describes Stripe."""
from __future__ import annotations

import threading
import time

import httpx

PI = {"amount": 1000, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True, "capture_method": "manual"}


def count_pis(api) -> int:
    return len(api.get("/v1/payment_intents", {"limit": 100})["data"])


def test_same_key_same_params_replays_the_first_response(api):
    first = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-1")
    second = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-1")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["original-request"] == first.headers["request-id"]
    assert "idempotent-replayed" not in first.headers
    assert count_pis(api) == 1


def test_same_key_different_params_is_an_idempotency_error(api):
    api.post("/v1/payment_intents", PI, idempotency_key="key-2")
    response = api.call("POST", "/v1/payment_intents", {**PI, "amount": 1001}, idempotency_key="key-2")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "idempotency_error"
    other_endpoint = api.call("POST", "/v1/customers", {}, idempotency_key="key-2")
    assert other_endpoint.json()["error"]["type"] == "idempotency_error"
    assert count_pis(api) == 1


def test_errors_after_execution_began_are_replayed_too(api):
    declined = {**PI, "payment_method": "pm_card_chargeDeclined"}
    first = api.call("POST", "/v1/payment_intents", declined, idempotency_key="key-3")
    second = api.call("POST", "/v1/payment_intents", declined, idempotency_key="key-3")
    assert first.status_code == second.status_code == 402
    assert first.json() == second.json()
    assert len(api.journal(op="decline")) == 1


def test_validation_failures_are_not_stored(api):
    bad = api.call("POST", "/v1/payment_intents", {"currency": "eur"}, idempotency_key="key-4")
    assert bad.status_code == 400
    good = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-4")
    assert good.status_code == 200 and "idempotent-replayed" not in good.headers


def test_keys_are_scoped_per_api_key_and_ignored_on_get(api):
    api.post("/v1/payment_intents", PI, idempotency_key="key-5")
    other = api.call("POST", "/v1/payment_intents", {**PI, "amount": 5}, idempotency_key="key-5",
                     headers={"Authorization": "Bearer sk_test_other_account"})  # fmt: skip
    assert other.status_code == 200
    listing = api.call("GET", "/v1/payment_intents", headers={"Idempotency-Key": "key-5"})
    assert listing.status_code == 200 and "idempotent-replayed" not in listing.headers
    too_long = api.call("POST", "/v1/customers", {}, idempotency_key="k" * 256)
    assert too_long.status_code == 400


def test_keys_are_pruned_after_24_hours_of_sandbox_time(api):
    api.post("/v1/payment_intents", PI, idempotency_key="key-6")
    api.control("/clock", {"advance_seconds": 86_400})
    fresh = api.call("POST", "/v1/payment_intents", {**PI, "amount": 7}, idempotency_key="key-6")
    assert fresh.status_code == 200 and fresh.json()["amount"] == 7


def test_concurrent_request_with_the_key_in_flight_gets_409(api):
    api.control("/faults", {"mode": "slow", "delay_seconds": 0.6, "path": "/v1/payment_intents", "method": "POST"})
    results: dict[str, httpx.Response] = {}

    def first() -> None:
        results["first"] = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-7")

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.2)
    second = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-7")
    thread.join()
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_in_use"
    assert results["first"].status_code == 200
    third = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-7")
    assert third.headers["idempotent-replayed"] == "true"
    assert count_pis(api) == 1


def test_injected_errors_happen_before_execution_and_are_not_stored(api):
    api.control("/faults", {"mode": "error", "status": 503, "count": 2, "path": "/v1/payment_intents"})
    for _ in range(2):
        response = api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-8")
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "api_error"
        assert response.headers["stripe-should-retry"] == "true"
    assert count_pis(api) == 0
    assert api.call("POST", "/v1/payment_intents", PI, idempotency_key="key-8").status_code == 200
    api.control("/faults", {"mode": "error", "status": 429, "retry_after": 1})
    limited = api.call("GET", "/v1/charges")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit"
    assert limited.headers["retry-after"] == "1"
    assert api.control("/faults", method="GET")["data"] == []


def test_delay_after_apply_lets_the_client_time_out_on_a_request_that_succeeded(api, sandbox):
    pi = api.post("/v1/payment_intents", PI)
    api.control("/faults", {"mode": "drop", "path": "/v1/payment_intents/*/capture"})
    headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": "cap-1",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    started = time.monotonic()
    try:
        httpx.post(f"{sandbox.url}/v1/payment_intents/{pi['id']}/capture", content="amount_to_capture=400",
                   headers=headers, timeout=0.4)  # fmt: skip
        raise AssertionError("the dropped response arrived")
    except httpx.ReadTimeout:
        pass
    assert time.monotonic() - started < 2
    # the effect was applied...
    assert api.get(f"/v1/payment_intents/{pi['id']}")["status"] == "succeeded"
    # ...and the retry with the same key replays it instead of capturing again
    retry = httpx.post(f"{sandbox.url}/v1/payment_intents/{pi['id']}/capture", content="amount_to_capture=400",
                       headers=headers, timeout=5)  # fmt: skip
    assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
    assert len(api.journal(op="capture", payment_intent=pi["id"])) == 1


def test_invalid_fault_specs_are_refused(api):
    for spec in ({"mode": "explode"}, {"mode": "error", "status": 418}, {"count": 0}, {"colour": "red"}):
        assert api.http.post("/_sandbox/faults", json=spec).status_code == 400


def test_the_ledger_stays_consistent_under_concurrent_requests(api, sandbox):
    from concurrent.futures import ThreadPoolExecutor

    pi = api.post("/v1/payment_intents", {**PI, "amount": 1000})
    api.post(f"/v1/payment_intents/{pi['id']}/capture")

    def refund(i: int) -> int:
        with httpx.Client(base_url=sandbox.url, timeout=10) as client:
            return client.post("/v1/refunds", content=f"payment_intent={pi['id']}&amount=150",
                               headers={"Authorization": "Bearer sk_test_x", "Idempotency-Key": f"r-{i}",
                                        "Content-Type": "application/x-www-form-urlencoded"}).status_code  # fmt: skip

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(refund, range(12)))
    assert statuses.count(200) == 6 and statuses.count(400) == 6  # 6 x 150 fits in 1000, the 7th does not
    charge = api.get(f"/v1/charges/{pi['latest_charge']}")
    assert charge["amount_refunded"] == 900
    assert len(api.journal(op="refund", payment_intent=pi["id"])) == 6

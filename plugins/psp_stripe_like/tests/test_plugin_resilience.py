"""Retries: bounded, only on network errors / 409 / 429 / 5xx, always with the same
Idempotency-Key, so a timeout after the PSP did the work never moves money twice."""
from __future__ import annotations

import socket
import uuid

import pytest

from payweave.hooks.errors import InvalidRequest, TemporarilyUnavailable
from payweave.hooks.models import CaptureRequest, Money, PaymentStatus, RefundRequest, ReserveRequest


def key() -> str:
    return f"tx-{uuid.uuid4().hex}"


def reserve_request(amount="25.00") -> ReserveRequest:
    return ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of(amount, "EUR"),
                          payment_method_token="pm_card_visa")  # fmt: skip


def test_capture_that_succeeded_but_timed_out_is_retried_into_exactly_one_capture(psp, account_factory, sandbox, api):
    account = account_factory(sandbox.url, read_timeout_seconds=0.3, max_attempts=3)
    reserved = psp.reserve(account, reserve_request("80.00"))
    api.control("/faults", {"mode": "drop", "path": "/v1/payment_intents/*/capture", "count": 1})
    result = psp.capture(account, CaptureRequest(idempotency_key=key(), transaction_id="T",
                                                 psp_reference=reserved.psp_reference, amount=Money.of("50.00", "EUR")))  # fmt: skip
    assert result.amount == Money.of("50.00", "EUR") and result.released == Money.of("30.00", "EUR")
    captures = api.journal(op="capture", payment_intent=reserved.psp_reference)
    assert len(captures) == 1 and captures[0]["amount"] == 5000
    assert api.control("/faults", method="GET")["data"] == []  # the fault was used: the first attempt did time out


def test_refund_that_timed_out_is_not_repeated(psp, account_factory, sandbox, api):
    account = account_factory(sandbox.url, read_timeout_seconds=0.3)
    reserved = psp.reserve(account, ReserveRequest(idempotency_key=key(), transaction_id="T", amount=Money.of("30.00", "EUR"),
                                                   payment_method_token="pm_card_visa", capture=True))  # fmt: skip
    api.control("/faults", {"mode": "delay", "delay_seconds": 1.0, "path": "/v1/refunds", "method": "POST"})
    refund = psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=reserved.psp_reference,
                                               amount=Money.of("30.00", "EUR")))  # fmt: skip
    assert refund.amount == Money.of("30.00", "EUR")
    assert len(api.journal(op="refund", payment_intent=reserved.psp_reference)) == 1


def test_server_errors_and_rate_limits_are_retried(psp, account, api):
    api.control("/faults", {"mode": "error", "status": 503, "count": 1, "path": "/v1/payment_intents", "method": "POST"})
    api.control("/faults", {"mode": "error", "status": 429, "count": 1, "path": "/v1/payment_intents", "method": "POST"})
    result = psp.reserve(account, reserve_request())
    assert result.status is PaymentStatus.RESERVED
    assert len(api.get("/v1/payment_intents")["data"]) == 1


def test_request_in_flight_elsewhere_409_is_retried_until_replayed(psp, account_factory, sandbox, api):
    account = account_factory(sandbox.url, read_timeout_seconds=0.2, max_attempts=8, retry_base_delay_seconds=0.1,
                              retry_max_delay_seconds=0.3)  # fmt: skip
    api.control("/faults", {"mode": "slow", "delay_seconds": 0.6, "path": "/v1/payment_intents", "method": "POST"})
    result = psp.reserve(account, reserve_request())
    assert result.status is PaymentStatus.RESERVED
    assert len(api.get("/v1/payment_intents")["data"]) == 1


def test_retries_are_bounded_and_end_in_temporarily_unavailable(psp, account_factory, sandbox, api):
    account = account_factory(sandbox.url, max_attempts=3)
    api.control("/faults", {"mode": "error", "status": 500, "count": 3, "path": "/v1/payment_intents"})
    with pytest.raises(TemporarilyUnavailable) as excinfo:
        psp.reserve(account, reserve_request())
    assert excinfo.value.retryable and excinfo.value.details["http_status"] == 500
    assert api.get("/v1/payment_intents")["data"] == []
    assert api.control("/faults", method="GET")["data"] == []  # exactly three attempts were made


def test_unreachable_psp_is_temporarily_unavailable(psp, account_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    account = account_factory(f"http://127.0.0.1:{port}", max_attempts=2)
    with pytest.raises(TemporarilyUnavailable):
        psp.reserve(account, reserve_request())


def test_client_errors_are_not_retried(psp, account, api):
    reserved = psp.reserve(account, reserve_request("10.00"))
    # a zero-delay "delay" fault changes nothing but counts the requests that match it
    api.control("/faults", {"mode": "delay", "delay_seconds": 0, "count": 5, "path": "/v1/payment_intents/*/capture"})
    with pytest.raises(InvalidRequest):
        psp.capture(account, CaptureRequest(idempotency_key=key(), transaction_id="T", psp_reference=reserved.psp_reference,
                                            amount=Money.of("10.01", "EUR")))  # fmt: skip
    assert api.control("/faults", method="GET")["data"][0]["count"] == 4  # one attempt, no retry


def test_stripe_specific_retry_rules():
    import httpx

    from payweave.plugins.psp_stripe_like.client import _should_retry

    def response(status, body=None, headers=None):
        return httpx.Response(status, json=body, headers=headers)

    assert _should_retry(response(409, {"error": {"code": "idempotency_key_in_use"}})) is True
    assert _should_retry(response(400, {"error": {"code": "rate_limit"}})) is True
    assert _should_retry(response(400, {"error": {"code": "parameter_missing"}})) is None  # the shared rule: no
    assert _should_retry(response(503, headers={"Stripe-Should-Retry": "false"})) is False
    assert _should_retry(response(400, headers={"Stripe-Should-Retry": "true"})) is True
    assert _should_retry(httpx.Response(400, content=b"<html>")) is None


def test_derived_keys_are_deterministic_and_bounded():
    from payweave.plugins.psp_stripe_like.client import derive_key

    assert derive_key("tx-1", "reauthorize") == "tx-1:reauthorize"
    long = "k" * 255
    assert derive_key(long, "release-old") == derive_key(long, "release-old")
    assert len(derive_key(long, "release-old")) <= 255
    assert derive_key(long, "a") != derive_key(long, "b") and derive_key(long, "a") != derive_key("k" * 254, "a")

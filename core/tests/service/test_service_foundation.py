"""The service's shared behaviour through a real uvicorn on loopback: problem details for every
refusal, body size limit, request ids, health and metrics."""
from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from payweave.core.service import create_app
from payweave.core.settings import PayweaveSettings, ServiceSettings
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.errors import TemporarilyUnavailable
from payweave.hooks.models import Money


class Payload(BaseModel):
    amount: Money
    note: str


@pytest.fixture(scope="module")
def server():
    app = create_app(PayweaveSettings(service=ServiceSettings(max_body_bytes=2048)))
    router = APIRouter()

    @router.post("/echo")
    def echo(payload: Payload) -> Payload:
        return payload

    @router.get("/busy")
    def busy() -> None:
        from datetime import timedelta

        raise TemporarilyUnavailable("The PSP is busy; try again shortly.", retry_after=timedelta(seconds=7))

    @router.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals sk_live_123")

    app.include_router(router)
    with LoopbackServer(app) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:payweave:problem:{code}"
    assert body["detail"] and body["request_id"] == response.headers["x-request-id"]
    return body


def test_health_and_metrics(client):
    assert client.get("/health").json()["status"] == "ok"
    client.get("/health")
    metrics = client.get("/metrics").text
    assert "payweave_up 1.0" in metrics
    assert 'payweave_http_requests_total{method="GET",route="/health",status="200"}' in metrics


def test_readiness_without_store_is_unavailable(client):
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {"store": "not configured"}


def test_request_id_is_echoed_or_made(client):
    assert client.get("/health", headers={"X-Request-Id": "bc-42"}).headers["x-request-id"] == "bc-42"
    made = client.get("/health", headers={"X-Request-Id": "bad id with spaces!"}).headers["x-request-id"]
    assert len(made) == 32 and made.isalnum()


def test_each_request_is_logged_at_debug_with_its_id_and_not_built_above(client):
    import io
    import json
    import time

    import structlog

    from payweave.core import logging as pw_logging

    saved = structlog.get_config()
    try:
        for level, expected in (("DEBUG", True), ("INFO", False)):
            stream = io.StringIO()
            pw_logging.configure("json", level, stream=stream)
            assert pw_logging.enabled_for(10) is expected
            assert client.get("/health", headers={"X-Request-Id": f"log-{level}"}).status_code == 200
            # the line is written after the answer has gone out (by the server's thread): wait for it
            deadline = time.monotonic() + (5 if expected else 0.5)
            while True:
                lines = [json.loads(line) for line in stream.getvalue().splitlines()]
                logged = [line for line in lines if line.get("event") == "http.request"]
                if logged or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            if expected:
                assert logged and logged[-1]["request_id"] == f"log-{level}"
                assert (logged[-1]["route"], logged[-1]["status"], logged[-1]["level"]) == ("/health", 200, "debug")
            else:
                assert not logged
    finally:
        structlog.configure(**saved)


def test_malformed_json_is_400(client):
    body = assert_problem(client.post("/echo", content=b"{not json", headers={"content-type": "application/json"}), 400, "malformed_json")
    assert body["detail"] == "The request body is not valid JSON."


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"amount": {"amount": "1.005", "currency": "EUR"}, "note": "x"}, "more decimals than EUR allows (2)"),
        ({"amount": {"amount": "1", "currency": "XYZ"}, "note": "x"}, "not an ISO 4217 currency code"),
        ({"amount": {"amount": 1.5, "currency": "EUR"}, "note": "x"}, "must not be floats"),
        ({"amount": {"amount": "1", "currency": "EUR"}}, "note: Field required"),
        ({"amount": "ten", "note": "x"}, "amount:"),
    ],
)
def test_bad_values_are_422_with_the_sentence(client, payload, fragment):
    body = assert_problem(client.post("/echo", json=payload), 422, "invalid_request")
    assert fragment in body["detail"]
    assert "input" not in str(body["details"])  # submitted values are never echoed


def test_oversized_body_is_413(client):
    big = {"amount": {"amount": "1", "currency": "EUR"}, "note": "x" * 5000}
    assert_problem(client.post("/echo", json=big), 413, "body_too_large")


def test_oversized_streamed_body_without_length_is_413(client):
    def chunks():
        for _ in range(10):
            yield b"x" * 1024

    assert_problem(client.post("/echo", content=chunks(), headers={"content-type": "application/json"}), 413, "body_too_large")


def test_payweave_errors_keep_status_code_and_retry_after(client):
    response = client.get("/busy")
    body = assert_problem(response, 503, "temporarily_unavailable")
    assert body["detail"] == "The PSP is busy; try again shortly."
    assert response.headers["retry-after"] == "7"


def test_unknown_route_and_method(client):
    assert_problem(client.get("/nowhere"), 404, "not_found")
    assert_problem(client.delete("/health"), 405, "method_not_allowed")


def test_unexpected_errors_do_not_leak(client):
    body = assert_problem(client.get("/crash"), 500, "internal_error")
    assert "sk_live" not in str(body) and "RuntimeError" not in str(body)


def test_good_request_passes(client):
    payload = {"amount": {"amount": "12.30", "currency": "eur"}, "note": "ok"}
    assert client.post("/echo", json=payload).json() == {"amount": {"amount": "12.30", "currency": "EUR"}, "note": "ok"}

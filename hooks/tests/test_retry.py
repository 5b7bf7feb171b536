"""The HTTP retry policy against a real server on loopback."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.errors import TemporarilyUnavailable
from payweave.hooks.retry import RetryPolicy, retry_after_seconds, send_with_retries


class Script:
    """Answers each request with the next scripted (status, headers); records idempotency keys."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, dict[str, str]]] = []
        self.keys: list[str | None] = []
        self.lock = threading.Lock()

    async def endpoint(self, request: Request) -> Response:
        with self.lock:
            self.keys.append(request.headers.get("idempotency-key"))
            status, headers = self.queue.pop(0) if self.queue else (200, {})
        return JSONResponse({"n": len(self.keys)}, status_code=status, headers=headers)


@pytest.fixture(scope="module")
def server():
    script = Script()
    app = Starlette(routes=[Route("/op", script.endpoint, methods=["POST"])])
    with LoopbackServer(app) as srv:
        srv.script = script
        yield srv


@pytest.fixture
def script(server):
    server.script.queue.clear()
    server.script.keys.clear()
    return server.script


def _send(server, client):
    return lambda: client.post(server.url + "/op", headers={"Idempotency-Key": "k-1"})


def test_retries_retryable_statuses_with_the_same_request(server, script):
    script.queue += [(503, {}), (429, {"Retry-After": "0"}), (500, {})]
    sleeps: list[float] = []
    with httpx.Client(timeout=5) as client:
        response = send_with_retries(_send(server, client), policy=RetryPolicy(max_attempts=5, base_delay=0.01), sleep=sleeps.append)
    assert response.status_code == 200
    assert script.keys == ["k-1"] * 4
    assert len(sleeps) == 3 and sleeps[1] == 0.0  # Retry-After honoured


@pytest.mark.parametrize("status", [400, 401, 402, 404, 409, 422])
def test_does_not_retry_final_statuses(server, script, status):
    script.queue.append((status, {}))
    with httpx.Client(timeout=5) as client:
        response = send_with_retries(_send(server, client), sleep=lambda s: None)
    assert response.status_code == status
    assert len(script.keys) == 1


def test_bounded_attempts_return_last_response(server, script):
    script.queue += [(503, {})] * 10
    with httpx.Client(timeout=5) as client:
        response = send_with_retries(_send(server, client), policy=RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert response.status_code == 503
    assert len(script.keys) == 3


def test_too_long_retry_after_gives_up_with_typed_error(server, script):
    script.queue.append((503, {"Retry-After": "3600"}))
    with httpx.Client(timeout=5) as client, pytest.raises(TemporarilyUnavailable) as excinfo:
        send_with_retries(_send(server, client), policy=RetryPolicy(max_retry_after=30), sleep=lambda s: None)
    assert excinfo.value.retry_after == timedelta(seconds=3600)
    assert excinfo.value.retryable


def test_transport_errors_become_temporarily_unavailable():
    attempts = []

    def send():
        attempts.append(1)
        with httpx.Client(timeout=0.5) as client:
            return client.get("http://127.0.0.1:9/")  # discard port: connection refused

    with pytest.raises(TemporarilyUnavailable, match="did not answer after 3 attempts"):
        send_with_retries(send, policy=RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert len(attempts) == 3


def test_should_retry_override(server, script):
    script.queue += [(409, {})]
    with httpx.Client(timeout=5) as client:
        response = send_with_retries(
            _send(server, client), sleep=lambda s: None, should_retry=lambda r: r.status_code == 409 or None
        )
    assert response.status_code == 200 and len(script.keys) == 2


def test_retry_after_http_date():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(now + timedelta(seconds=42), usegmt=True)})
    assert retry_after_seconds(response, now=now) == pytest.approx(42)
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def test_delay_is_exponential_capped_and_jittered():
    policy = RetryPolicy(base_delay=1, max_delay=8)
    assert [RetryPolicy(base_delay=1, max_delay=8, jitter=False).delay(a) for a in range(1, 6)] == [1, 2, 4, 8, 8]
    for attempt in range(1, 8):
        d = policy.delay(attempt)
        ceiling = min(8, 2 ** (attempt - 1))
        assert ceiling / 2 <= d <= ceiling

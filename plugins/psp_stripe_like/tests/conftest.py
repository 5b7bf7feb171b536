"""Fixtures: a real sandbox on loopback per test, a raw form-encoding API client, and the
plugin loaded through the core's plugin manager (the same path as production)."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payweave.core.testing.loopback import LoopbackServer
from payweave.plugins.psp_stripe_like.formcodec import encode
from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings, create_app

API_KEY = "sk_test_payweave_tests"
WEBHOOK_SECRET = "whsec_payweave_tests_secret"


class Api:
    """A thin Stripe-wire client for tests: form-encoded POSTs, query-string GETs."""

    def __init__(self, base_url: str, api_key: str = API_KEY):
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        self.api_key = api_key

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
             idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        all_headers = {"Authorization": f"Bearer {self.api_key}", **(headers or {})}
        if method == "POST":
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
            if idempotency_key:
                all_headers["Idempotency-Key"] = idempotency_key
            return self.http.post(path, content=encode(params or {}), headers=all_headers)
        url = f"{path}?{encode(params)}" if params else path
        return self.http.request(method, url, headers=all_headers)

    def post(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.call("POST", path, params, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call("GET", path, params)
        assert response.status_code == 200, response.text
        return response.json()

    def control(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        response = self.http.request(method, f"/_sandbox{path}", json=body if method == "POST" else None)
        assert response.status_code < 400, response.text
        return response.json()

    def journal(self, **filters: str) -> list[dict[str, Any]]:
        return self.http.get("/_sandbox/journal", params=filters).json()["data"]

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def sandbox_settings() -> SandboxSettings | None:
    """Parametrize ``sandbox_settings`` with a SandboxSettings to get a dedicated sandbox;
    None (the default) shares one server, reset before every test."""
    return None


@pytest.fixture(scope="session")
def shared_sandbox() -> Iterator[LoopbackServer]:
    app = create_app(SandboxSettings(webhook_delivery="manual"))
    with LoopbackServer(app) as server:
        server.sandbox = app.state.sandbox  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, sandbox_settings: SandboxSettings | None) -> Iterator[LoopbackServer]:
    if sandbox_settings is None:
        server = request.getfixturevalue("shared_sandbox")
        response = httpx.post(f"{server.url}/_sandbox/reset", timeout=10)
        assert response.status_code == 200, response.text
        yield server
        return
    app = create_app(sandbox_settings)
    with LoopbackServer(app) as server:
        server.sandbox = app.state.sandbox  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def api(sandbox: LoopbackServer) -> Iterator[Api]:
    client = Api(sandbox.url)
    yield client
    client.close()


@pytest.fixture
def manager():
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings

    pm = PluginManager(PayweaveSettings(plugins="psp_stripe_like"))
    pm.load_entrypoints()
    record = pm.get("psp_stripe_like")
    assert record.status == "active", record.error
    return pm


def make_account(manager: Any, base_url: str, **overrides: Any):
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "base_url": base_url,
        "webhook_secret": SecretStr(WEBHOOK_SECRET),
        "read_timeout_seconds": 2.0,
        "retry_base_delay_seconds": 0.01,
        "retry_max_delay_seconds": 0.05,
        **overrides,
    }
    return manager.account("psp_stripe_like", f"test-{uuid.uuid4().hex[:8]}", **values)


@pytest.fixture
def api_factory():
    """``api_factory(base_url)`` -> an :class:`Api` (closed after the test)."""
    made: list[Api] = []

    def build(base_url: str, api_key: str = API_KEY) -> Api:
        made.append(Api(base_url, api_key))
        return made[-1]

    yield build
    for client in made:
        client.close()


@pytest.fixture
def account_factory(manager: Any):
    """``account_factory(base_url, **settings)`` -> a fresh Account of the plugin."""
    return lambda base_url, **overrides: make_account(manager, base_url, **overrides)


@pytest.fixture
def account(manager: Any, sandbox: LoopbackServer):
    return make_account(manager, sandbox.url, save_cards_for_renewal=True)


@pytest.fixture
def psp(manager: Any):
    return manager.psp("psp_stripe_like")


class Receiver:
    """A webhook receiver on loopback: records every delivery; fails the first ``fail_first``."""

    def __init__(self, fail_first: int = 0, status: int = 500):
        self.fail_first = fail_first
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.server = LoopbackServer(Starlette(routes=[Route("/hook", self.handle, methods=["POST"])]))

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.requests.append((dict(request.headers), body))
            failing = len(self.requests) <= self.fail_first
        return Response("nope" if failing else "ok", status_code=self.status if failing else 200)

    @property
    def url(self) -> str:
        return self.server.url + "/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with rec.server:
        yield rec

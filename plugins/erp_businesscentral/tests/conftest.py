"""Shared fixtures: a seeded BC sandbox served on loopback, and helpers to talk to it raw
(httpx) or through the connector. Every test gets its own sandbox state and server."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.retry import RetryPolicy
from payweave.plugins.erp_businesscentral import bcjson
from payweave.plugins.erp_businesscentral.client import BCClient
from payweave.plugins.erp_businesscentral.connector import BusinessCentralConnector
from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState, create_app, seed
from payweave.plugins.erp_businesscentral.sandbox.model import Company
from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


Loopback = LoopbackServer


SCOPE = "https://api.businesscentral.dynamics.com/.default"


class Env:
    """A running sandbox plus ways to call it."""

    def __init__(self, state: SandboxState, server: LoopbackServer, company: Company, client_id: str, secret: str):
        self.state = state
        self.server = server
        self.company = company
        self.client_id = client_id
        self.secret = secret
        self.url = server.url
        self.api_root = f"{server.url}/v2.0/{state.tenant_id}/{state.environment}/api/v2.0"
        self.companion_root = f"{server.url}/v2.0/{state.tenant_id}/{state.environment}/api/payweave/payments/v1.0"
        self._token: str | None = None
        self._token_expires = 0.0
        self.http = httpx.Client(timeout=30)
        self._clients: list[BCClient] = []

    # ---- raw HTTP
    def token(self, *, fresh: bool = False) -> str:
        """A token for raw calls, renewed when the sandbox clock has passed its expiry."""
        if self._token is None or fresh or self.state.clock.time() >= self._token_expires:
            r = self.http.post(f"{self.url}/{self.state.tenant_id}/oauth2/v2.0/token",
                               data={"grant_type": "client_credentials", "client_id": self.client_id,
                                     "client_secret": self.secret, "scope": SCOPE})
            assert r.status_code == 200, r.text
            self._token = r.json()["access_token"]
            self._token_expires = self.state.clock.time() + r.json()["expires_in"] - 5
        return self._token

    def path(self, path: str, companion: bool = False) -> str:
        if path.startswith("http"):
            return path
        root = self.companion_root if companion else self.api_root
        if path.startswith("/"):
            return root + path
        return f"{root}/companies({self.company.id})/{path}"

    def call(self, method: str, path: str, *, companion: bool = False, json: Any = None,
             headers: dict[str, str] | None = None, auth: bool = True, params: dict[str, Any] | None = None) -> httpx.Response:
        hdrs = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        hdrs.update(headers or {})
        content = None
        if json is not None:
            content = bcjson.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        return self.http.request(method, self.path(path, companion), content=content, headers=hdrs, params=params)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def body(self, response: httpx.Response) -> Any:
        return bcjson.loads(response.content)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return bcjson.loads(r.content) if r.content else None

    # ---- through the client
    def settings(self, **over: Any) -> BusinessCentralSettings:
        values: dict[str, Any] = dict(
            tenant_id=self.state.tenant_id, environment=self.state.environment, company_id=self.company.id,
            client_id=self.client_id, client_secret=self.secret, token_url=f"{self.url}/{{tenant}}/oauth2/v2.0/token",
            api_base_url=self.url, page_size=50, read_timeout=10,
        )
        values.update(over)
        return BusinessCentralSettings(**values)

    def client(self, *, policy: RetryPolicy | None = None, **over: Any) -> BCClient:
        client = BCClient(self.settings(**over), policy=policy or RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05))
        self._clients.append(client)
        return client

    def connector(self, *, policy: RetryPolicy | None = None, wall_clock: Any = None, **over: Any) -> BusinessCentralConnector:
        client = self.client(policy=policy, **over)
        kw = {"wall_clock": wall_clock} if wall_clock is not None else {}
        return BusinessCentralConnector(client.settings, client=client, **kw)

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self.http.close()


def make_env(state: SandboxState, company: Company, **server_kw: Any) -> Iterator[Env]:
    client_id, secret = state.register_app()
    with Loopback(create_app(state), **server_kw) as server:
        env = Env(state, server, company, client_id, secret)
        try:
            yield env
        finally:
            env.close()


@pytest.fixture
def env_for() -> Any:
    """``with env_for(state, company) as env:`` for tests that build their own state."""
    return contextlib.contextmanager(make_env)


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(clock=SandboxClock(start=START), webhook_delivery="manual")


@pytest.fixture
def seeded(state: SandboxState) -> SandboxState:
    seed(state, seed=11, customers=8, items=12, invoices_per_year=60, years=1, orders=3, credit_memos=2,
         return_orders=1, draft_invoices=2)
    return state


@pytest.fixture
def env(seeded: SandboxState) -> Iterator[Env]:
    company = next(iter(seeded.companies.values()))
    yield from make_env(seeded, company)


@pytest.fixture
def empty_env(state: SandboxState) -> Iterator[Env]:
    """A company with only the default chart of accounts, journals and no documents."""
    company = state.add_company("Empty Co")
    yield from make_env(state, company)


class Subscriber:
    """A webhook receiver: answers BC's validation handshake and records notifications.
    ``status`` is what it answers to notifications; ``echo=False`` fails the handshake."""

    def __init__(self) -> None:
        self.handshakes: list[str] = []
        self.notifications: list[dict[str, Any]] = []
        self.status = 202
        self.echo = True
        self.url = ""

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, Response
        from starlette.routing import Route

        async def hook(request: Request) -> Response:
            token = request.query_params.get("validationToken")
            if token is not None:
                self.handshakes.append(token)
                return PlainTextResponse(token if self.echo else "wrong-token")
            self.notifications.append(bcjson.loads(await request.body()))
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/bc-hook", hook, methods=["GET", "POST"])])

    def items(self) -> list[dict[str, Any]]:
        return [item for n in self.notifications for item in n["value"]]


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    with Loopback(sub.app(), lifespan="off") as server:
        sub.url = f"{server.url}/bc-hook"
        yield sub

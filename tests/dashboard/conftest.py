"""Fixtures of the dashboard tests: the whole payweave service (real context on a temporary
SQLite store, real uvicorn on loopback) with psp_mock, optionally the BC sandbox with the
erp_businesscentral plugin pointed at it and an in-process job worker, plus API keys of two
companies and helpers to log in as a browser would (login token, session cookie, CSRF token).

Browser tests (``@pytest.mark.browser``) drive Debian's chromium through Playwright; without
/usr/bin/chromium they skip and say why. Screenshots go to ``test-artifacts/dashboard/``.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from payweave.core.engine import PaymentEngine
from payweave.core.jobs.worker import BackgroundWorker
from payweave.core.plugins import PluginManager
from payweave.core.service import create_app
from payweave.core.service.apikeys import ApiKeys
from payweave.core.service.context import ServiceContext, build_context
from payweave.core.settings import JobSettings, PayweaveSettings
from payweave.core.store import Store
from payweave.core.testing.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
COMPANY_A = "acme"
COMPANY_B = "globex"
BC_PLUGIN = "erp_businesscentral"
PSP_ACCOUNTS = {"default": {"profile": "full"}, "minimal": {"profile": "minimal"}}

_TOKEN = re.compile(r'name="(login_token|csrf_token)" value="([^"]+)"')


def hidden(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in a page."""
    for found, value in _TOKEN.findall(html):
        if found == name:
            return value
    raise AssertionError(f"no hidden {name} in the page")


@dataclass
class Dashboard:
    """A running service with keys for two companies."""

    server: LoopbackServer
    context: ServiceContext
    key_a: str
    key_b: str
    keys: ApiKeys
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def engine(self) -> PaymentEngine:
        return self.context.engine

    def client(self, **kw: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False, **kw)
        self.clients.append(client)
        return client

    def login(self, key: str) -> tuple[httpx.Client, str]:
        """A browser-like client logged in with ``key``; returns it and its CSRF token."""
        client = self.client()
        page = client.get("/ui/login")
        assert page.status_code == 200, page.text
        response = client.post("/ui/login", data={"api_key": key, "login_token": hidden(page.text, "login_token")})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/ui"
        home = client.get("/ui/payment-methods")
        assert home.status_code == 200, home.text
        return client, hidden(home.text, "csrf_token")

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store, copied for each test (migrating once per session)."""
    path = tmp_path_factory.mktemp("dashboard-template") / "payweave.db"
    Store(f"sqlite:///{path}").dispose()
    return path


def _settings(tmp_path: Path, template: Path, accounts: dict[str, dict[str, dict[str, Any]]],
              plugins: str) -> PayweaveSettings:
    database = tmp_path / "payweave.db"
    shutil.copyfile(template, database)
    return PayweaveSettings(
        database_url=f"sqlite:///{database}",
        plugins=plugins,
        accounts=accounts,
        api_key_pepper="dashboard-test-pepper",  # type: ignore[arg-type]
        jobs=JobSettings(poll_interval=0.1, backoff_base=0.2, backoff_max=2.0, max_attempts=3),
    )


def start_dashboard(settings: PayweaveSettings) -> Dashboard:
    plugins = PluginManager(settings)
    plugins.load_entrypoints()
    broken = [p.name for p in plugins.plugins() if p.status != "active" and p.name in (settings.plugins or "")]
    assert not broken, plugins.errors()
    context = build_context(settings, store=Store(settings.database_url), plugins=plugins)
    app = create_app(settings, context=context)
    server = LoopbackServer(app).start()
    keys = ApiKeys(context.engine.store, settings.api_key_pepper.get_secret_value(), clock=context.engine.clock)
    key_a = keys.create(COMPANY_A, name="ACME operator").secret
    key_b = keys.create(COMPANY_B, name="Globex operator").secret
    return Dashboard(server=server, context=context, key_a=key_a, key_b=key_b, keys=keys)


@pytest.fixture
def dashboard(tmp_path: Path, sqlite_template: Path) -> Iterator[Dashboard]:
    """The service with psp_mock only (no ERP plugin)."""
    settings = _settings(tmp_path, sqlite_template, {"psp_mock": PSP_ACCOUNTS}, "psp_mock")
    dash = start_dashboard(settings)
    try:
        yield dash
    finally:
        dash.close()
        dash.server.stop()
        dash.context.close()


# ------------------------------------------------------------------------------------------- BC
@dataclass
class Sandbox:
    state: Any
    server: LoopbackServer
    company: Any
    client_id: str
    secret: str
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def account_settings(self) -> dict[str, Any]:
        return dict(tenant_id=self.state.tenant_id, environment=self.state.environment, client_id=self.client_id,
                    client_secret=self.secret, token_url=f"{self.url}/{{tenant}}/oauth2/v2.0/token",
                    api_base_url=self.url, read_timeout=10, max_attempts=2)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        from payweave.plugins.erp_businesscentral import bcjson

        content = bcjson.dumps(body).encode() if body is not None else None
        response = self.http.request(method, path.replace("{c}", self.company.id), content=content,
                                     headers={"Content-Type": "application/json"} if content else {})
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return bcjson.loads(response.content) if response.content else None


@pytest.fixture
def bc_sandbox() -> Iterator[Sandbox]:
    from payweave.plugins.erp_businesscentral import plugin as bc_plugin
    from payweave.plugins.erp_businesscentral.sandbox import SandboxState, seed
    from payweave.plugins.erp_businesscentral.sandbox import create_app as bc_app

    state = SandboxState(webhook_delivery="manual")
    seed(state, seed=5, customers=6, items=8, invoices_per_year=30, years=2, orders=2, credit_memos=2,
         return_orders=1, draft_invoices=1)
    client_id, secret = state.register_app()
    company = next(iter(state.companies.values()))
    server = LoopbackServer(bc_app(state)).start()
    http = httpx.Client(base_url=server.url, timeout=30)
    try:
        yield Sandbox(state, server, company, client_id, secret, http)
    finally:
        http.close()
        server.stop()
        bc_plugin.reset_clients()


@dataclass
class BcDashboard:
    dash: Dashboard
    bc: Sandbox
    worker: BackgroundWorker


@pytest.fixture
def bc_dashboard(tmp_path: Path, sqlite_template: Path, bc_sandbox: Sandbox,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[BcDashboard]:
    """The service with the BC plugin (pointed at the sandbox), psp_mock and a job worker."""
    monkeypatch.setenv("PAYWEAVE_SYNC_PAGE_SIZE", "10")
    monkeypatch.setenv("PAYWEAVE_SYNC_PDFS", "none")
    accounts = {"psp_mock": PSP_ACCOUNTS, BC_PLUGIN: {"default": bc_sandbox.account_settings()}}
    settings = _settings(tmp_path, sqlite_template, accounts, f"psp_mock,{BC_PLUGIN}")
    dash = start_dashboard(settings)
    worker = BackgroundWorker(dash.engine, poll_interval=0.1, recover_on_start=False, renewal_scan=False).start()
    try:
        yield BcDashboard(dash, bc_sandbox, worker)
    finally:
        worker.stop()
        dash.close()
        dash.server.stop()
        dash.context.close()


# ------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install -r requirements-dev.txt)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


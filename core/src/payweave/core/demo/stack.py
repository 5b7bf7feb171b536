"""Everything the demo runs, started the way a deployment would start it, on loopback only:

* the **BC sandbox** (API v2.0 + the payweave companion API, OAuth2, webhooks), seeded with a
  company and its history, an Entra app registered for payweave;
* the **Stripe-shaped PSP sandbox**, delivering signed webhooks to payweave's webhook URL;
* **psp_mock**, in process (the PSP for the flows that need partial voids or its own clock);
* the **payweave service** (``create_app`` over a real context: SQLite store, plugins loaded from
  their entry points, engine) with the in-process job worker and the maintenance thread, exactly
  what ``payweave serve`` runs.

Helpers act as the people around it: :class:`BcUser` (a BC user, through the sandbox's admin
endpoints), :class:`BcApi` (anyone reading BC through its API, to check what payweave wrote),
:class:`StripeSandbox` (the customer on the hosted page, the PSP's clock and payout run).
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from payweave.core import logging as pw_logging
from payweave.core.service.context import ServiceContext, build_context
from payweave.core.service.runtime import Runtime
from payweave.core.settings import JobSettings, PayweaveSettings, ServiceSettings
from payweave.core.sync import ErpSyncService
from payweave.core.sync.jobs import service_for_engine
from payweave.core.testing.loopback import LoopbackServer

from .clock import ShiftedClock
from .errors import DemoFailed, DemoUsageError

COMPANY = "CRONUS"
BC_PLUGIN = "erp_businesscentral"
STRIPE = "psp_stripe_like"
MOCK = "psp_mock"

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


@dataclass(frozen=True)
class Sizes:
    """How much history the BC sandbox holds."""

    customers: int
    invoices_per_year: int
    years: int
    orders: int
    credit_memos: int


#: the full demo: three years of history (two of them before the last 12 months)
FULL = Sizes(customers=150, invoices_per_year=1200, years=4, orders=8, credit_memos=20)
#: --fast: only the last 12 months, so the initial sync has no history to read
FAST = Sizes(customers=20, invoices_per_year=150, years=1, orders=4, credit_memos=5)


class _LateApp:
    """An ASGI app bound to its socket before the real app exists (the Stripe sandbox must know
    payweave's webhook URL, and payweave the sandbox's API URL)."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if self.target is None:
            raise RuntimeError("the payweave app is not built yet")
        await self.target(scope, receive, send)


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise DemoFailed(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    return response.json() if response.content else None


class BcUser:
    """A Business Central user: creates, releases, cancels and posts documents (the sandbox's
    admin endpoints stand for BC's pages; each action writes the companion API's event log and
    triggers BC's webhooks as BC does)."""

    def __init__(self, base_url: str, company_id: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.company_id = company_id

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_sandbox/companies/{self.company_id}{path}", json=body)
        return _json(response, f"BC {method} {path}")

    def create(self, document_type: str, customer_number: str, lines: list[dict[str, Any]], *,
               payment_method: str | None, **fields: Any) -> dict[str, Any]:
        body = {"documentType": document_type, "customerNumber": customer_number, "lines": lines, **fields}
        if payment_method:
            body["paymentMethodCode"] = payment_method
        return self._call("POST", "/documents", body)

    def get(self, document_id: str) -> dict[str, Any]:
        return self._call("GET", f"/documents/{document_id}")

    def act(self, document_id: str, action: str, body: Any = None) -> dict[str, Any] | None:
        return self._call("POST", f"/documents/{document_id}/{action}", body)

    def close(self) -> None:
        self.http.close()


class BcApi:
    """BC read through its API v2.0 with the Entra app's token, to check what payweave wrote."""

    def __init__(self, account_settings: dict[str, Any], company_id: str) -> None:
        from payweave.plugins.erp_businesscentral.client import BCClient
        from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings

        self.client = BCClient(BusinessCentralSettings(**{**account_settings, "company_id": company_id}))
        self.company = self.client.company(company_id)

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        row = self.company.get(f"salesInvoices({invoice_id})")
        if row is None:
            raise DemoFailed(f"BC has no sales invoice {invoice_id}")
        return row

    def gl_entries(self, document_number: str) -> list[dict[str, Any]]:
        return list(self.company.entities("generalLedgerEntries", filter=f"documentNumber eq '{document_number}'"))

    def account_numbers(self) -> dict[str, str]:
        """G/L account id -> number."""
        return {str(a["id"]).lower(): str(a["number"]) for a in self.company.entities("accounts")}

    def close(self) -> None:
        self.client.close()


class StripeSandbox:
    """The Stripe-shaped PSP: its API (as the merchant's integration calls it), the hosted
    checkout page (as the customer uses it) and its control surface (clock, payouts, journal)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def api(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        from payweave.plugins.psp_stripe_like.formcodec import encode

        headers = {"Authorization": f"Bearer {self.api_key}"}
        if method == "POST":
            headers["Idempotency-Key"] = secrets.token_hex(16)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self.http.post(path, content=encode(params or {}), headers=headers)
        else:
            response = self.http.request(method, f"{path}?{encode(params)}" if params else path, headers=headers)
        return _json(response, f"Stripe {method} {path}")

    def control(self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST") -> Any:
        response = self.http.request(method, f"/_sandbox{path}", json=body if method == "POST" else None)
        return _json(response, f"Stripe sandbox {path}")

    def journal(self, payment_intent: str) -> list[dict[str, Any]]:
        return self.control(f"/journal?payment_intent={payment_intent}", method="GET")["data"]

    def moved(self, payment_intent: str, op: str) -> Decimal:
        """Sum of the journal's ``op`` movements of a payment, in major units."""
        from payweave.hooks.money import from_minor_units

        entries = [e for e in self.journal(payment_intent) if e["op"] == op]
        return sum((from_minor_units(int(e["amount"]), str(e["currency"]).upper()) for e in entries), Decimal(0))

    def deliveries(self) -> list[dict[str, Any]]:
        return self.control("/webhooks/deliveries", method="GET")["data"]

    def close(self) -> None:
        self.http.close()


class DemoStack:
    """Start (and stop) the sandboxes and the payweave service for the demo."""

    def __init__(self, directory: Path, *, seed: int, sizes: Sizes) -> None:
        self.directory = directory
        self.seed = seed
        self.sizes = sizes
        self.db_path = directory / "payweave.db"
        self.log_path = directory / "payweave-demo.log"
        self.config_path = directory / "payweave.toml"
        self.company = COMPANY
        self._closers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ start
    def prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.db_path.exists():
            raise DemoUsageError(
                f"{self.db_path} exists already (an earlier demo?). Run the demo with another --dir, or delete it.")
        self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self._closers.append(self._log.close)
        level = os.environ.get("PAYWEAVE_LOG_LEVEL", "INFO")
        # the demo's own output is the story; payweave's structured logs go to the log file
        pw_logging.configure("json", level, stream=self._log)

    def start_bc(self) -> Any:
        from payweave.plugins.erp_businesscentral.sandbox import SandboxState, create_app, seed

        self.bc_state = SandboxState(webhook_delay_seconds=0.2)
        s = self.sizes
        self.bc_seed = seed(self.bc_state, seed=self.seed, customers=s.customers, items=30,
                            invoices_per_year=s.invoices_per_year, years=s.years, orders=s.orders,
                            credit_memos=s.credit_memos)
        self.bc_company_id = self.bc_seed.companies[0]
        self.bc_client_id, self.bc_secret = self.bc_state.register_app("payweave-demo", secrets.token_urlsafe(24))
        self.bc_server = LoopbackServer(create_app(self.bc_state)).start()
        self._closers.append(self.bc_server.stop)
        self.bc_account = {
            "tenant_id": self.bc_state.tenant_id, "environment": self.bc_state.environment,
            "client_id": self.bc_client_id, "client_secret": self.bc_secret,
            "token_url": f"{self.bc_server.url}/{{tenant}}/oauth2/v2.0/token", "api_base_url": self.bc_server.url,
            "company_id": "",  # picked at connect time (a PAYWEAVE_BC_COMPANY_ID of the caller must not leak in)
        }
        self.bc_user = BcUser(self.bc_server.url, self.bc_company_id)
        self._closers.append(self.bc_user.close)
        self.bc_api = BcApi(self.bc_account, self.bc_company_id)
        self._closers.append(self.bc_api.close)
        return self.bc_seed

    def start_psp_and_service(self) -> None:
        from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings, WebhookEndpointConfig
        from payweave.plugins.psp_stripe_like.sandbox import create_app as stripe_app

        # payweave's socket first: the Stripe sandbox delivers its webhooks there
        late = _LateApp()
        self.pw_server = LoopbackServer(late)
        self.pw_url = self.pw_server.url
        self.stripe_api_key = f"sk_test_{secrets.token_hex(12)}"
        self.stripe_webhook_secret = f"whsec_{secrets.token_hex(16)}"
        endpoint = WebhookEndpointConfig(f"{self.pw_url}/webhooks/{STRIPE}/default", self.stripe_webhook_secret)
        self.stripe_server = LoopbackServer(stripe_app(SandboxSettings(
            api_keys=(self.stripe_api_key,), webhook_endpoints=(endpoint,), id_seed=self.seed))).start()
        self._closers.append(self.stripe_server.stop)
        self.stripe = StripeSandbox(self.stripe_server.url, self.stripe_api_key)
        self._closers.append(self.stripe.close)

        self.settings = PayweaveSettings(
            database_url=f"sqlite:///{self.db_path}",
            plugins=f"{BC_PLUGIN},{MOCK},{STRIPE}",
            jobs=JobSettings(poll_interval=0.2),
            service=ServiceSettings(public_base_url=self.pw_url, port=self.pw_server.port),
            accounts={
                BC_PLUGIN: {"default": dict(self.bc_account)},
                MOCK: {"default": {"profile": "full"}},
                STRIPE: {"default": {"api_key": self.stripe_api_key, "base_url": self.stripe_server.url,
                                     "webhook_secret": self.stripe_webhook_secret}},
            },
        )
        for secret in (self.bc_secret, self.stripe_api_key, self.stripe_webhook_secret):
            pw_logging.register_secret(secret)
        self.clock = ShiftedClock()
        self.context: ServiceContext = build_context(self.settings, clock=self.clock)
        errors = self.context.plugins.errors()
        if errors:
            raise DemoFailed("plugins failed to load: " + "; ".join(str(e) for e in errors))
        self.engine = self.context.engine
        self.runtime = Runtime(self.context, job_worker=True)
        late.target = self.runtime.app
        self.pw_server.start()
        self._closers.append(self.pw_server.stop)
        self.runtime.start()
        self._closers.append(self.runtime.stop)
        self.sync: ErpSyncService = service_for_engine(self.engine)
        self.anonymous = httpx.Client(base_url=self.pw_url, timeout=30)
        self._closers.append(self.anonymous.close)

    def open_api(self, key: str) -> httpx.Client:
        self.api = httpx.Client(base_url=self.pw_url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        self._closers.append(self.api.close)
        return self.api

    def write_config(self) -> None:
        """A payweave.toml next to the database so the CLI finds it after the demo."""
        self.config_path.write_text(
            "# Written by `payweave demo`: the demo's database. The sandboxes it ran against are gone, so\n"
            "# `payweave status`, `payweave tx list|show` and `payweave jobs` read the store only.\n"
            f'database_url = "sqlite:///{self.db_path.resolve().as_posix()}"\n'
            'log_level = "WARNING"\n',
            encoding="utf-8",
        )

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # stopping must go on; the demo's outcome is already decided
                pass
        from payweave.plugins.erp_businesscentral import plugin as bc_plugin

        bc_plugin.reset_clients()


__all__ = ["COMPANY", "FAST", "FULL", "BcApi", "BcUser", "DemoStack", "Sizes", "StripeSandbox"]

"""Fixtures of the ERP sync tests: a seeded BC sandbox on loopback (real HTTP, real uvicorn),
the erp_businesscentral plugin loaded from its entry point and pointed at it, and a store
parametrized over SQLite and PostgreSQL (``PAYWEAVE_TEST_POSTGRES_URL``; without it the
PostgreSQL variants skip and say why), following core/tests/conftest.py.

The sync service's clock follows the sandbox clock, so "the last 12 months" means the same
thing on both sides.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.core.sync import ErpSyncService, SyncSettings
from payweave.core.testing.loopback import LoopbackServer
from payweave.core.testing.stores import (  # noqa: F401  (POSTGRES_ENV: imported by tests)
    POSTGRES_ENV,
    SKIP_PG,
    migrated_sqlite_template,
    postgres_schema_url,
    sqlite_store_from,
)
from payweave.plugins.erp_businesscentral import bcjson
from payweave.plugins.erp_businesscentral import plugin as bc_plugin
from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState, create_app, seed
from payweave.plugins.erp_businesscentral.sandbox.model import Company, SalesDoc
from payweave.plugins.erp_businesscentral.sandbox.resources import remaining_amount, standard_status

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
PLUGIN = "erp_businesscentral"


# ------------------------------------------------------------------------------------------- stores
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite_template(tmp_path_factory.mktemp("sync-template"))


@pytest.fixture(scope="session")
def postgres_store() -> Iterator[Store | None]:
    with postgres_schema_url("pw_sync") as url:
        if url is None:
            yield None
            return
        store = Store(url)
        try:
            yield store
        finally:
            store.dispose()


def _sqlite(tmp_path: Path, template: Path) -> Store:
    return sqlite_store_from(template, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = _sqlite(tmp_path, sqlite_template)
        yield s
        s.dispose()
        return
    pg: Store | None = request.getfixturevalue("postgres_store")
    if pg is None:
        pytest.skip(SKIP_PG)
    pg.delete_all()
    yield pg


@pytest.fixture
def sqlite_store(tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    s = _sqlite(tmp_path, sqlite_template)
    yield s
    s.dispose()


# ------------------------------------------------------------------------------------------- sandbox
Loopback = LoopbackServer


class SandboxFollowingClock:
    """payweave's clock for the tests: the sandbox's clock."""

    def __init__(self, clock: SandboxClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


class BC:
    """A running BC sandbox, its company, and helpers to act as a BC user."""

    def __init__(self, state: SandboxState, server: LoopbackServer, company: Company) -> None:
        self.state = state
        self.server = server
        self.company = company
        self.url = server.url
        self.client_id, self.secret = state.register_app()
        self.http = httpx.Client(base_url=server.url, timeout=30)

    # ---- plugin account settings and a plugin manager pointed at this sandbox
    def account_settings(self, **over: Any) -> dict[str, Any]:
        values: dict[str, Any] = dict(
            tenant_id=self.state.tenant_id, environment=self.state.environment, client_id=self.client_id,
            client_secret=self.secret, token_url=f"{self.url}/{{tenant}}/oauth2/v2.0/token", api_base_url=self.url,
            read_timeout=10, max_attempts=5,
        )
        values.update(over)
        return values

    def env(self, **over: Any) -> dict[str, str]:
        """The same settings as ``PAYWEAVE_BC_*`` environment variables (CLI, subprocesses)."""
        return {f"PAYWEAVE_BC_{k.upper()}": str(v) for k, v in self.account_settings(**over).items()}

    def plugins(self, **over: Any) -> PluginManager:
        manager = PluginManager(PayweaveSettings(plugins=PLUGIN, accounts={PLUGIN: {"default": self.account_settings(**over)}}))
        manager.load_entrypoints()
        assert manager.get(PLUGIN).status == "active", manager.errors()
        return manager

    def service(self, store: Store, *, account: dict[str, Any] | None = None, **sync: Any) -> ErpSyncService:
        settings = SyncSettings(**{"page_size": 25, "pdfs": "open", **sync})
        return ErpSyncService(store, self.plugins(**(account or {})), settings=settings,
                              clock=SandboxFollowingClock(self.state.clock))

    # ---- acting as a BC user (admin endpoints)
    def admin(self, method: str, path: str, body: Any = None) -> Any:
        content = bcjson.dumps(body).encode() if body is not None else None
        response = self.http.request(method, path.replace("{c}", self.company.id), content=content,
                                     headers={"Content-Type": "application/json"} if content else {})
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return bcjson.loads(response.content) if response.content else None

    def pay(self, invoice_id: str, amount: Decimal | str) -> Any:
        return self.admin("POST", f"/_sandbox/companies/{{c}}/invoices/{invoice_id}/payments", {"amount": str(amount)})

    def credit(self, invoice_id: str, amount: Decimal | str) -> Any:
        return self.admin("POST", f"/_sandbox/companies/{{c}}/invoices/{invoice_id}/credits", {"amount": str(amount)})

    def patch_document(self, doc_id: str, body: dict[str, Any]) -> Any:
        return self.admin("PATCH", f"/_sandbox/companies/{{c}}/documents/{doc_id}", body)

    def document_action(self, doc_id: str, action: str, body: Any = None) -> Any:
        return self.admin("POST", f"/_sandbox/companies/{{c}}/documents/{doc_id}/{action}", body)

    def create_document(self, body: dict[str, Any]) -> Any:
        return self.admin("POST", "/_sandbox/companies/{c}/documents", body)

    def ledger_entries(self) -> list[dict[str, Any]]:
        return self.admin("GET", "/_sandbox/companies/{c}/customerLedgerEntries")["value"]

    # ---- the truth, read from the sandbox's own tables
    def invoices(self) -> dict[str, SalesDoc]:
        with self.state.lock:
            return {d.id: d for d in self.company.tables["invoices"].by_id.values()}

    def customers(self) -> dict[str, Any]:
        with self.state.lock:
            return dict(self.company.tables["customers"].by_id)

    def credit_memos(self) -> dict[str, SalesDoc]:
        with self.state.lock:
            return {d.id: d for d in self.company.tables["creditMemos"].by_id.values()}

    def open_invoice(self, minimum: Decimal = Decimal("20"), exclude: tuple[str, ...] = ()) -> SalesDoc:
        """A posted, unpaid, untouched invoice in local currency (deterministic pick)."""
        return next(d for d in sorted(self.invoices().values(), key=lambda d: d.number)
                    if d.id not in exclude and d.posted and not d.canceled and d.remaining >= minimum and d.remaining == d.total_incl
                    and self.currency_of(d) == self.company.lcy)

    def currency_of(self, doc: SalesDoc) -> str:
        return doc.currency or self.company.lcy

    def draft_invoice(self) -> SalesDoc:
        return next(d for d in sorted(self.invoices().values(), key=lambda d: d.number) if not d.posted)

    @staticmethod
    def status_of(doc: SalesDoc) -> str:
        return standard_status(doc)

    @staticmethod
    def remaining_of(doc: SalesDoc) -> Decimal:
        return remaining_amount(doc)

    def assert_mirrored(self, store: Store, company_id: str | None = None) -> dict[str, int]:
        """Every BC customer, invoice (with its lines) and credit memo is in the store exactly
        once, with BC's current values; what BC settled on each invoice was recorded exactly
        once (sum of its erp_payments rows == total - remaining). Returns the counts."""
        from sqlalchemy import func, select

        from payweave.core.sync.models import (
            ErpCreditMemoRow,
            ErpCustomerRow,
            ErpInvoiceLineRow,
            ErpInvoiceRow,
            ErpPaymentRow,
        )
        from payweave.hooks.money import from_minor_units

        cid = company_id or self.company.id
        truth = self.invoices()
        with store.transaction() as s:
            rows = {r.invoice_id: r for r in s.scalars(select(ErpInvoiceRow).where(
                ErpInvoiceRow.company_id == cid, ErpInvoiceRow.origin == "erp"))}
            lines = dict(s.execute(select(ErpInvoiceLineRow.invoice_id, func.count()).where(
                ErpInvoiceLineRow.company_id == cid).group_by(ErpInvoiceLineRow.invoice_id)).all())
            paid = dict(s.execute(select(ErpPaymentRow.invoice_id, func.sum(ErpPaymentRow.amount_minor)).where(
                ErpPaymentRow.company_id == cid).group_by(ErpPaymentRow.invoice_id)).all())
            customers = set(s.scalars(select(ErpCustomerRow.customer_id).where(
                ErpCustomerRow.company_id == cid, ErpCustomerRow.origin == "erp")))
            memos = {r.credit_memo_id: r for r in s.scalars(select(ErpCreditMemoRow).where(
                ErpCreditMemoRow.company_id == cid))}
        assert set(rows) == set(truth), (f"missing {len(set(truth) - set(rows))}, "
                                         f"unexpected {len(set(rows) - set(truth))}")
        for inv_id, doc in truth.items():
            row = rows[inv_id]
            total = from_minor_units(row.total_incl_minor, row.currency)
            remaining = from_minor_units(row.remaining_minor, row.currency)
            assert (row.number, total, remaining, row.erp_status, row.due_date) == (
                doc.number, doc.total_incl, self.remaining_of(doc), self.status_of(doc), doc.due_date), doc.number
            assert lines.get(inv_id, 0) == len(doc.lines), doc.number
            settled = row.total_incl_minor - row.remaining_minor if doc.posted else 0
            assert row.settled_minor == settled, doc.number
            assert (paid.get(inv_id) or 0) == settled, f"{doc.number}: settlements recorded {paid.get(inv_id)} != {settled}"
        assert customers == set(self.customers())
        assert set(memos) == {d.id for d in self.credit_memos().values()}
        return {"invoices": len(rows), "customers": len(customers), "credit_memos": len(memos),
                "lines": sum(lines.values())}

    def close(self) -> None:
        self.http.close()


def make_bc(state: SandboxState) -> Iterator[BC]:
    company = next(iter(state.companies.values()))
    with Loopback(create_app(state)) as server:
        bc = BC(state, server, company)
        try:
            yield bc
        finally:
            bc.close()
            bc_plugin.reset_clients()


def seeded_state(*, years: int = 2, invoices_per_year: int = 40, **kw: Any) -> SandboxState:
    state = SandboxState(clock=SandboxClock(start=START), webhook_delivery="manual")
    seed(state, seed=11, customers=kw.pop("customers", 8), items=12, invoices_per_year=invoices_per_year, years=years,
         orders=kw.pop("orders", 3), credit_memos=kw.pop("credit_memos", 3), return_orders=1,
         draft_invoices=kw.pop("draft_invoices", 2), **kw)
    return state


@pytest.fixture
def bc() -> Iterator[BC]:
    yield from make_bc(seeded_state())


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app)`` runs an ASGI app on loopback for the rest of the test; returns its server."""
    servers: list[LoopbackServer] = []

    def start(app: Any) -> LoopbackServer:
        server = Loopback(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """``sandbox(**seed_options)`` starts a seeded sandbox of its own (served until the test
    ends) and returns its :class:`BC`; ``sandbox.state_of(...)`` seeds without serving."""
    running: list[Iterator[BC]] = []

    def start(state: SandboxState | None = None, **seed_options: Any) -> BC:
        gen = make_bc(state if state is not None else seeded_state(**seed_options))
        running.append(gen)
        return next(gen)

    start.state_of = seeded_state  # type: ignore[attr-defined]
    yield start
    for gen in running:
        for _ in gen:  # runs the generator's cleanup
            pass

"""The world a reliability run happens in: one store, the PSP's books, a BC sandbox, a clock.

* The **store** is a SQLite file in the run's work directory (or a PostgreSQL schema of its own).
* The **PSP** is psp_mock behind the fault-injecting wrapper (:class:`ChaosPsp`, plugin name
  ``psp_chaos``): its ledger lives outside payweave's objects, so it survives every simulated
  crash, exactly as a real PSP's books survive payweave's process.
* **Business Central** is the BC API v2.0 sandbox on a loopback uvicorn, reached over real HTTP
  by the erp_businesscentral plugin behind :class:`ChaosErp` (plugin name ``erp_chaos``). Its
  Retry-After waits go to the world clock (recorded, not slept).
* The **clock** is a manual clock shared by the engine, the job queue, the sync service and the
  mock PSP; recovery moves it forward to make backed-off retries due.

"The process" is a :class:`Process`: store, plugin manager, engine and services. A simulated
crash abandons it mid-operation (:meth:`World.restart` builds a new one on the same database
file and the same PSP and BC), which is what a restarted ``payweave serve`` sees.
"""
from __future__ import annotations

import asyncio
import io
import secrets
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from payweave.core.engine import PaymentEngine, PaymentMethodSetup
from payweave.core.engine.links import PaymentLinks
from payweave.core.engine.psp_events import PspEvents
from payweave.core.engine.psp_inbox import PspInbox
from payweave.core.jobs.clock import ManualClock
from payweave.core.jobs.queue import JobStatus
from payweave.core.jobs.worker import Worker
from payweave.core.plugins import PluginManager
from payweave.core.settings import JobSettings, PayweaveSettings
from payweave.core.store import JobRow, OperationRow, Store
from payweave.core.store.service_models import PspEventRow, ServiceOperationRow
from payweave.core.sync import ErpSyncService, SyncSettings
from payweave.core.sync.models import ErpWritebackRow
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import WebhookRequest

from .chaos import ChaosErp, ChaosPsp, DbFaults
from .faults import FaultController, FaultKind, SimulatedCrash

COMPANY = "RELIABILITY"
PSP = "psp_chaos"
ERP = "erp_chaos"
#: psp_mock capability profiles the schedules use, with the settings overrides of each.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"profile": "full"},
    "single": {"profile": "full", "capture_modes": "automatic,manual"},
    "nopartial": {"profile": "no_partial_capture"},
    "auto": {"profile": "auto_capture"},
}
CLEARING, BANK, FEES = "10900", "CHECKING", "60800"
#: Unfinished statuses (engine operations and the service's external calls).
UNFINISHED_OPS = ("started", "unknown", "parked")


class WorldClock(ManualClock):
    """payweave's clock in a run; moving it moves the mock PSP's ledger clocks too."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._followers: list[Any] = []
        self.slept = 0.0
        self.waits: list[float] = []

    def follow(self, mock_clock: Any) -> None:
        mock_clock.freeze(self.now())
        self._followers.append(mock_clock)

    def carry(self, running_clock: Any) -> None:
        """Move a clock that keeps running in real time (BC's) forward with this one, so the
        other side never falls behind payweave's time: BC stamps a change made after payweave
        connected later than the connection, as in the real world."""
        self._followers.append(running_clock)

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        now = super().advance(step)
        for follower in self._followers:
            follower.advance(step)
        return now

    def sleep(self, seconds: float) -> None:
        """A wait someone asked for (a Retry-After): recorded, then the clock moves instead."""
        if seconds > 0:
            self.slept += seconds
            self.waits.append(seconds)
            self.advance(seconds)


class SecretScanner(io.TextIOBase):
    """A log stream that never stores what it is given: it counts lines and looks for secrets."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.lines = 0
        self.bytes = 0
        self.leaks: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._tail = ""

    def add(self, name: str, value: str) -> None:
        self.secrets[name] = value

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            self.lines += text.count("\n")
            self.bytes += len(text)
            chunk = self._tail + text
            for name, value in self.secrets.items():
                if value and value in chunk:
                    where = chunk.index(value)
                    self.leaks.append((name, chunk[max(0, where - 80): where + len(value) + 20]))
            longest = max((len(v) for v in self.secrets.values()), default=0)
            self._tail = chunk[-longest:] if longest else ""
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class Process:
    """One incarnation of the payweave "process": what a crash throws away."""

    store: Store
    plugins: PluginManager
    engine: PaymentEngine
    events: PspEvents
    links: PaymentLinks
    sync: ErpSyncService
    db: DbFaults
    worker: Worker
    #: the HTTP service's webhook path: group-committed recording, applied afterwards
    inbox: PspInbox


@dataclass
class WorldConfig:
    workdir: Path
    database_url: str | None = None
    """None: a SQLite file in ``workdir``; else a PostgreSQL server URL (a schema of its own is made)."""
    bc: bool = True


@dataclass
class Delivery:
    """One PSP event on its way to payweave; signed afresh at every attempt, as PSPs do."""

    event: dict[str, Any]
    account: str
    profile: str

    @property
    def event_id(self) -> str:
        return str(self.event.get("id"))


class World:
    def __init__(self, config: WorldConfig, controller: FaultController, *, scanner: SecretScanner | None = None) -> None:
        from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState, create_app, seed

        self.config = config
        self.controller = controller
        self.scanner = scanner or SecretScanner()
        self.run_id = uuid.uuid4().hex[:8]
        self.restarts = 0
        self._pg_admin: Any = None
        self._pg_schema: str | None = None
        self.database_url = self._database(config)
        self.is_postgres = self.database_url.startswith("postgresql")

        # ---- Business Central sandbox (real HTTP on loopback)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        self.bc_state = SandboxState(clock=SandboxClock(start=start), webhook_delivery="manual")
        seed(self.bc_state, seed=11, customers=4, items=6, invoices_per_year=6, years=1, orders=1, credit_memos=1,
             return_orders=1, draft_invoices=1)
        self.bc_company = next(iter(self.bc_state.companies.values()))
        self.bc_server: LoopbackServer | None = LoopbackServer(create_app(self.bc_state)).start() if config.bc else None
        bc_client_id, bc_secret = self.bc_state.register_app()
        self.clock = WorldClock(start)
        self.clock.carry(self.bc_state.clock)

        # ---- secrets: every one of them is looked for in every log line of the run
        pepper = f"pepper-{secrets.token_urlsafe(18)}"
        self.scanner.add("api_key_pepper", pepper)
        self.scanner.add("bc_client_secret", bc_secret)
        psp_accounts: dict[str, dict[str, Any]] = {}
        for profile, overrides in PROFILES.items():
            api_key = f"sk_mock_{secrets.token_urlsafe(18)}"
            webhook_secret = f"whsec_{secrets.token_urlsafe(18)}"
            self.scanner.add(f"psp {profile} api_key", api_key)
            self.scanner.add(f"psp {profile} webhook_secret", webhook_secret)
            psp_accounts[self.account(profile)] = {**overrides, "api_key": api_key, "webhook_secret": webhook_secret}
        self.bc_account = {
            "tenant_id": self.bc_state.tenant_id, "environment": self.bc_state.environment,
            "client_id": bc_client_id, "client_secret": bc_secret,
            "token_url": f"{self.bc_url}/{{tenant}}/oauth2/v2.0/token", "api_base_url": self.bc_url,
            "read_timeout": 10, "max_attempts": 5, "max_retry_after": 30,
        }
        self.settings = PayweaveSettings(
            database_url=self.database_url,
            plugins="",
            api_key_pepper=pepper,
            jobs=JobSettings(backoff_base=1.0, backoff_max=60.0, lease_seconds=30.0, max_attempts=20),
            accounts={PSP: psp_accounts, ERP: {"default": self.bc_account}},
        )
        Store(self.database_url).dispose()  # migrate once
        from payweave.plugins.psp_mock import ledger_for

        self.ledgers = {profile: ledger_for(f"psp_mock:{self.account(profile)}") for profile in PROFILES}
        for ledger in self.ledgers.values():
            self.clock.follow(ledger.clock)
        #: the latest deliveries (a late duplicate is drawn from them); per ledger, how many of
        #: its events were handed out (events are only appended: no rescan of the history)
        self.recent: deque[Delivery] = deque(maxlen=12)
        self._event_cursor: dict[str, int] = {profile: 0 for profile in PROFILES}
        self.bc_flows = 0
        self.bc_rotations = 0
        self.retry_after_waits: list[float] = []
        self.redeliver: list[Delivery] = []
        self.race_threads: list[threading.Thread] = []
        self.rng: Any = None
        self._drops = 0
        self.proc: Process = self._boot()
        self._setup()

    # ------------------------------------------------------------------ naming
    def account(self, profile: str) -> str:
        return f"r{self.run_id}-{profile}"

    @property
    def bc_url(self) -> str:
        assert self.bc_server is not None
        return self.bc_server.url

    @property
    def bc_company_id(self) -> str:
        return self.bc_company.id

    def rotate_bc(self) -> None:
        """Start using a new BC company (seeded, connected, accounts and payment methods set up).

        Long runs move on to a fresh company now and then, as a partner has many: the
        reconciliation reads every captured payment of a company on each run, so one company
        holding thousands of schedules' payments would only measure that scan."""
        from payweave.plugins.erp_businesscentral.sandbox import seed

        self.bc_rotations += 1
        with self.bc_state.lock:
            known = set(self.bc_state.companies)
        seed(self.bc_state, seed=11 + self.bc_rotations, customers=4, items=6, invoices_per_year=6, years=1, orders=1,
             credit_memos=1, return_orders=1, draft_invoices=1)
        with self.bc_state.lock:
            self.bc_company = next(c for cid, c in self.bc_state.companies.items() if cid not in known)
        self._connect_bc()

    # ------------------------------------------------------------------ database
    def _database(self, config: WorldConfig) -> str:
        if config.database_url is None:
            path = config.workdir / f"payweave-{self.run_id}.db"
            return f"sqlite:///{path}"
        base = make_url(config.database_url)
        if base.drivername == "postgresql":
            base = base.set(drivername="postgresql+psycopg")
        schema = f"pw_rel_{self.run_id}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(CreateSchema(schema))
        self._pg_admin = admin
        self._pg_schema = schema
        return base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def _terminate_backend(self, pid: int) -> None:
        with self._pg_admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    # ------------------------------------------------------------------ the process
    def _boot(self) -> Process:
        from payweave.core.sync import jobs as _sync_jobs  # noqa: F401  (registers the erp_sync job handler)
        from payweave.plugins.erp_businesscentral import plugin as bc_plugin
        from payweave.plugins.erp_businesscentral.client import BCClient
        from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings
        from payweave.plugins.psp_mock import plugin as mock_plugin
        from payweave.plugins.psp_mock.settings import MockPspSettings

        store = Store(self.database_url, migrate=False, lock_timeout=30.0)
        holder: dict[str, PluginManager] = {}
        plugins = PluginManager(self.settings)
        holder["m"] = plugins
        for obj, name in (
            (mock_plugin, "psp_mock"),
            (bc_plugin, "erp_businesscentral"),
            (ChaosPsp(lambda: holder["m"], self.controller, name=PSP, inner="psp_mock", settings_model=MockPspSettings), PSP),
            (ChaosErp(lambda: holder["m"], self.controller, name=ERP, inner="erp_businesscentral",
                      settings_model=BusinessCentralSettings), ERP),
        ):
            record = plugins.register(obj, name=name)
            assert record.status == "active", record.error
        # the BC client's Retry-After waits move the world clock instead of sleeping
        bc_settings = BusinessCentralSettings(**self.bc_account)
        key = bc_plugin._client_key(bc_settings)
        if key not in bc_plugin._clients:
            # (its rate limiter reads the same clock its waits move: the world's)
            bc_plugin._clients[key] = BCClient(bc_settings, sleep=self._bc_sleep,
                                               clock=lambda: self.clock.now().timestamp())
        engine = PaymentEngine(store, plugins, clock=self.clock, settings=self.settings)
        events = PspEvents(engine)
        links = PaymentLinks(engine, events, public_base_url="https://payweave.invalid")
        sync = ErpSyncService(store, plugins, settings=SyncSettings(page_size=50, pdfs="none", lease_seconds=60),
                              clock=self.clock, queue=engine.jobs, document_event_handler=engine.handle_event)
        db = DbFaults(store, admin=self._terminate_backend if store.is_postgres else None)
        worker = Worker(engine, name=f"rel-worker-{self.restarts}", lease_seconds=30.0, renewal_scan=False)
        return Process(store, plugins, engine, events, links, sync, db, worker, PspInbox(events))

    def _bc_sleep(self, seconds: float) -> None:
        self.retry_after_waits.append(seconds)
        self.clock.sleep(seconds)

    def restart(self) -> None:
        """The process died: throw it away (connections closed, locks released by the OS) and
        start a new one on the same database, PSP and BC."""
        old = self.proc
        old.db.disarm()
        self._drops += old.db.dropped
        try:
            old.inbox.close(timeout=5)  # its writer thread only (nothing waits: deliveries were awaited)
            old.store.dispose()
        except Exception:  # a dead process does not clean up; neither does this one
            pass
        self.restarts += 1
        self.proc = self._boot()

    @property
    def engine(self) -> PaymentEngine:
        return self.proc.engine

    @property
    def db_drops(self) -> int:
        """Database connections dropped under a statement, over every process of the run."""
        return self._drops + self.proc.db.dropped

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        engine = self.engine
        methods = [
            PaymentMethodSetup(company_id=COMPANY, code="FULL", psp=PSP, psp_account=self.account("full"), credit_allowed=True),
            PaymentMethodSetup(company_id=COMPANY, code="SINGLE", psp=PSP, psp_account=self.account("single")),
            PaymentMethodSetup(company_id=COMPANY, code="NOPARTIAL", psp=PSP, psp_account=self.account("nopartial")),
            PaymentMethodSetup(company_id=COMPANY, code="POSTING", psp=PSP, psp_account=self.account("full"),
                               capture_timing="on_posting", refund_timing="on_posting", credit_allowed=True),
            PaymentMethodSetup(company_id=COMPANY, code="JOBQ", psp=PSP, psp_account=self.account("full"),
                               capture_timing="job_queue", refund_timing="job_queue"),
            PaymentMethodSetup(company_id=COMPANY, code="VOID", psp=PSP, psp_account=self.account("full"), auto_void=True),
            PaymentMethodSetup(company_id=COMPANY, code="LINK", psp=PSP, psp_account=self.account("full"), start_payment=True,
                               success_url="https://shop.invalid/ok", error_url="https://shop.invalid/error",
                               cancel_url="https://shop.invalid/cancel"),
            PaymentMethodSetup(company_id=COMPANY, code="AUTOLINK", psp=PSP, psp_account=self.account("auto"),
                               auto_capture=True, start_payment=True, success_url="https://shop.invalid/ok",
                               error_url="https://shop.invalid/error", cancel_url="https://shop.invalid/cancel"),
        ]
        for method in methods:
            engine.save_payment_method(method)
        if self.config.bc:
            self._connect_bc()

    def _connect_bc(self) -> None:
        engine = self.engine
        cid = self.bc_company_id
        self.proc.sync.connect(plugin=ERP, erp_company_id=cid)
        self.proc.sync.set_account_setup(cid, payments_account=CLEARING, bank_account=BANK, fee_account=FEES,
                                         actor="reliability")
        engine.save_payment_method(PaymentMethodSetup(company_id=cid, code="PAYWEAVE", psp=PSP,
                                                      psp_account=self.account("full"), capture_timing="on_posting"))
        engine.save_payment_method(PaymentMethodSetup(company_id=cid, code="MANUAL", psp=PSP,
                                                      psp_account=self.account("full")))

    # ------------------------------------------------------------------ faults the world carries out
    def install_fault_handlers(self) -> None:
        from payweave.hooks.errors import TemporarilyUnavailable

        c = self.controller

        def psp_5xx(point: str, ctx: dict[str, Any]) -> None:
            raise TemporarilyUnavailable("The PSP answered HTTP 503 (injected).")

        def psp_429(point: str, ctx: dict[str, Any]) -> None:
            raise TemporarilyUnavailable("The PSP answered HTTP 429 (injected).", retry_after=timedelta(seconds=7))

        def psp_timeout(point: str, ctx: dict[str, Any]) -> None:
            raise TemporarilyUnavailable("The PSP did not answer within the read timeout (injected, after it applied).")

        def db_drop(point: str, ctx: dict[str, Any]) -> None:
            self.proc.db.arm()

        def bc_fault(kind: FaultKind) -> Callable[[str, dict[str, Any]], None]:
            from payweave.plugins.erp_businesscentral.sandbox import Fault

            def inject(point: str, ctx: dict[str, Any]) -> None:
                rng = self.rng
                many = bool(rng and rng.random() < 0.25)  # sometimes more than the client's attempts
                if kind is FaultKind.BC_DROP_AFTER_APPLY:
                    path = r"Microsoft\.NAV\.post$" if point.startswith("erp.record_payment") else None
                    self.bc_state.faults.inject(Fault(kind="drop", method="POST" if path else None, path=path))
                else:
                    status = 429 if kind is FaultKind.BC_429 else 503
                    self.bc_state.faults.inject(Fault(kind="status", status=status, retry_after=3, count=6 if many else 2))

            return inject

        def webhook_race(point: str, ctx: dict[str, Any]) -> None:
            self.race_webhooks()

        c.on(FaultKind.PSP_5XX, psp_5xx)
        c.on(FaultKind.PSP_429, psp_429)
        c.on(FaultKind.PSP_TIMEOUT_AFTER_SUCCESS, psp_timeout)
        c.on(FaultKind.DB_DROP, db_drop)
        c.on(FaultKind.BC_429, bc_fault(FaultKind.BC_429))
        c.on(FaultKind.BC_503, bc_fault(FaultKind.BC_503))
        c.on(FaultKind.BC_DROP_AFTER_APPLY, bc_fault(FaultKind.BC_DROP_AFTER_APPLY))
        c.on(FaultKind.WEBHOOK_RACE, webhook_race)

    # ------------------------------------------------------------------ webhooks
    def pending_webhooks(self) -> list[Delivery]:
        """Every event the PSP emitted and has not sent yet (now marked as sent)."""
        out: list[Delivery] = []
        for profile, ledger in self.ledgers.items():
            with ledger.lock:
                events = ledger.events[self._event_cursor[profile]:]
                self._event_cursor[profile] = len(ledger.events)
                for event in events:
                    ledger.delivered.add(event["id"])
            out += [Delivery(event, self.account(profile), profile) for event in events]
        self.recent.extend(out)
        return out

    def pending_webhooks_waiting(self) -> bool:
        return any(len(ledger.events) > self._event_cursor[p] for p, ledger in self.ledgers.items())

    def signed(self, delivery: Delivery) -> WebhookRequest:
        from payweave.plugins.psp_mock import signed_webhook

        account = self.engine.account(PSP, delivery.account).model_copy(update={"plugin": "psp_mock"})
        now = self.clock.now()
        return signed_webhook(account, delivery.event, received_at=now, timestamp=int(now.timestamp()))

    def deliver(self, delivery: Delivery) -> bool:
        """POST one webhook to payweave as the PSP does; False when payweave did not take it
        (the PSP delivers again later)."""
        try:
            self.controller.reached("webhook.receive")
            if self.rng is not None and self.rng.random() < 0.5:
                # as `payweave serve` does: record (group commit), answer, apply afterwards; a
                # crash in between leaves the event recorded and unapplied for recovery
                proc = self.proc
                request = self.signed(delivery)
                events = proc.events.verify(PSP, delivery.account, request)
                _run_coroutine(proc.inbox.receive(PSP, delivery.account, events, request.received_at))
                self.controller.reached("webhook.recorded")
                proc.events.apply_pending()
            else:  # recorded and applied in the caller's thread
                self.proc.events.receive(PSP, delivery.account, self.signed(delivery))
            return True
        except SimulatedCrash:
            self.restart()
            return False
        except PayweaveError as exc:
            if exc.retryable:
                return False
            raise
        except Exception as exc:  # database errors: an HTTP 500, the PSP retries
            if _is_db_error(exc):
                return False
            raise

    def race_webhooks(self) -> None:
        """Deliver what the PSP just sent from another thread, now, while the synchronous call
        has not returned: the delivery waits for the document's lock, as in production."""
        pending = self.pending_webhooks()
        if not pending:
            return
        proc = self.proc
        requests = [(d, self.signed(d)) for d in pending]

        def run() -> None:
            for d, request in requests:
                try:
                    proc.events.receive(PSP, d.account, request)
                except BaseException:  # noqa: BLE001 - the process may be gone; the PSP delivers again
                    self.redeliver.append(d)

        thread = threading.Thread(target=run, name="webhook-race", daemon=True)
        thread.start()
        self.race_threads.append(thread)

    def join_races(self) -> None:
        for thread in self.race_threads:
            thread.join(30)
            if thread.is_alive():
                raise RuntimeError("a racing webhook delivery did not finish in 30 s")
        self.race_threads.clear()

    # ------------------------------------------------------------------ recovery
    def recover_once(self) -> None:
        """What a restarted service and its worker do: replay PSP calls without outcome, retry
        link creations, re-evaluate deferred events, run due jobs, retry pending write-backs."""
        proc = self.proc
        proc.engine.recover()
        proc.links.recover()
        proc.events.reapply_deferred()
        for _ in range(50):
            if proc.worker.run_once() == 0:
                break

    def quiescent(self, tx_ids: list[str]) -> list[str]:
        """What is still in flight for these transactions (empty when everything settled)."""
        busy: list[str] = []
        with self.engine.store.transaction() as s:
            ops = s.scalars(select(OperationRow).where(OperationRow.transaction_id.in_(tx_ids),
                                                       OperationRow.status.in_(UNFINISHED_OPS))).all()
            busy += [f"operation {o.id} ({o.kind}) {o.status}" for o in ops]
            sops = s.scalars(select(ServiceOperationRow).where(ServiceOperationRow.transaction_id.in_(tx_ids),
                                                               ServiceOperationRow.status.in_(("started", "unknown")))).all()
            busy += [f"service operation {o.id} ({o.kind}) {o.status}" for o in sops]
            deferred = s.scalars(select(PspEventRow).where(PspEventRow.transaction_id.in_(tx_ids),
                                                           PspEventRow.status == "deferred")).all()
            busy += [f"webhook event {e.event_id} deferred" for e in deferred]
            # recorded, not applied yet (any transaction: a received event is not attached yet)
            received = s.scalars(select(PspEventRow.event_id).where(PspEventRow.status == "received").limit(5)).all()
            busy += [f"webhook event {e} recorded, not applied" for e in received]
            jobs = s.scalars(select(JobRow).where(
                JobRow.status.in_((JobStatus.PENDING.value, JobStatus.RUNNING.value)),
                JobRow.kind.in_(("capture", "refund", "recover_operation", "erp_sync")),
                JobRow.due_at <= self.clock.now() + timedelta(hours=1),
            )).all()
            busy += [f"job {j.id} ({j.kind}) {j.status}" for j in jobs
                     if j.transaction_id in tx_ids or (j.payload or {}).get("action") == "writeback"]
            if self.config.bc:
                wbs = s.scalars(select(ErpWritebackRow).where(ErpWritebackRow.status == "pending")).all()
                busy += [f"write-back {w.document_number} pending" for w in wbs]
        return busy

    def close(self) -> None:
        try:
            self.proc.store.dispose()
        finally:
            if self.bc_server is not None:
                self.bc_server.stop()
                self.bc_server = None
            if self._pg_admin is not None:
                with self._pg_admin.connect() as conn:
                    conn.execute(DropSchema(self._pg_schema, cascade=True))
                self._pg_admin.dispose()
            if not self.is_postgres:
                path = Path(make_url(self.database_url).database or "")
                for suffix in ("", "-wal", "-shm", ".lock"):
                    candidate = Path(str(path) + suffix)
                    if candidate.exists():
                        candidate.unlink()
            from payweave.plugins.erp_businesscentral import plugin as bc_plugin

            bc_plugin.reset_clients()


def _run_coroutine(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end from synchronous code, also when this thread already runs an
    event loop (a test's browser driver, say): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reliability-webhook") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _event_id(delivery: Delivery) -> str:
    return delivery.event_id


def _is_db_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, (DBAPIError, OperationalError))


__all__ = ["COMPANY", "ERP", "PROFILES", "PSP", "Delivery", "Process", "SecretScanner", "World", "WorldClock",
           "WorldConfig"]

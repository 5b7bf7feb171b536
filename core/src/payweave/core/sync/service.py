"""The ERP sync service: connect a company, sync it (initial, delta, notifications), keep the
webhook subscriptions alive, set up accounts, write payments and deposits back.

Initial sync (DESIGN 5, the reconciliation primer's "Initial Sync")
-------------------------------------------------------------------
``connect`` fixes the boundary ``R = now - recent_days`` (365) and puts the company in
**Pending**. Each entity (customers, invoices with lines, credit memos, payments) is one stream
read **newest change first** (``SyncCursor.newest_first``):

1. ``recent``: from the newest record until the first whole ERP response that reaches back past
   ``R`` (the last 12 months and the rest of that response), then their PDFs;
2. ``history``: the same stream on from there (the ``history`` cursor takes over the resume
   token), then their PDFs;

and reports **Connected**: every record read once, at one request per page. The delta of each
entity starts where its stream started (the newest record of its first page, minus the overlap):
what changes during the sync moves to the front of the stream, behind the reader, and is the
next delta's, so the run that completes the initial sync reads no delta. A plugin that cannot
read newest first gets the two windows (``[R, now]`` oldest first, then ``(-inf, R)``), as
connections made before newest-first reads have them (their ``recent`` cursor has ``since``).

Cursors and crashes
-------------------
Every page is applied and its cursor stored **in one database transaction** (the cursor is the
ERP's opaque resume token inside a stream, and the high-water ``lastModifiedDateTime``
between runs). A crash rolls back the page being applied and the next run repeats it; nothing
is skipped, and upserts make the repetition harmless. Pages commit one at a time and in
order; each page's COMMIT runs on a helper thread while the next page is read
(:class:`~payweave.core.sync.pipeline.PageCommits`). Pages are pulled from the plugin's
generator one at a time (memory stays flat however long the history is; the BC plugin parses a
response as it arrives and yields it in parts).

One run per company: a run holds a lease on the connection row (renewed and *fenced* on every
page commit; a run whose lease was taken over rolls back instead of writing). A lease held by a
process on this host that no longer exists is taken over at once; others expire.

Delta, webhooks, fallback polling
---------------------------------
``run_sync`` on a connected company reads each entity's changes since its high-water mark
(minus a small overlap), plus document events (DESIGN 5a) when enabled; several entities at once
through the plugin's optional ``erp_read_many_changes`` (BC: one ``$batch``). ERP webhooks
(``ensure_subscriptions``, renewed before they expire) make it near real time:
``handle_notification`` verifies a notification through the plugin and syncs (or enqueues a
sync of) the named entities; polling every ``poll_interval`` is the fallback.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from structlog.contextvars import bound_contextvars

from payweave.core.heap import heap_frozen
from payweave.core.jobs.clock import SYSTEM_CLOCK, Clock
from payweave.core.jobs.queue import JobQueue
from payweave.core.logging import get_logger
from payweave.core.metrics import SYNC_RECORDS, labelled
from payweave.core.plugins import ErpClient, PluginBug, PluginManager
from payweave.core.store import Store
from payweave.hooks.errors import (
    ConcurrencyConflict,
    ConfigurationError,
    InvalidRequest,
    NotSupported,
    PayweaveError,
    RemoteNotFound,
)
from payweave.hooks.models import (
    Account,
    LedgerAccount,
    Money,
    PluginKind,
    SyncCursor,
    SyncEntity,
    SyncPage,
    WebhookRequest,
)
from payweave.hooks.money import normalize_currency

from . import rules
from .errors import (
    AccountSetupInvalid,
    ConnectionExists,
    ConnectionNotFound,
    InvoiceNotFound,
    LeaseLost,
    SyncBusy,
    SyncError,
)
from .events import DocumentEventHandler, EventsMixin
from .models import (
    ErpAccountSetupRow,
    ErpConnectionRow,
    ErpCreditMemoRow,
    ErpCustomerRow,
    ErpDocumentEventRow,
    ErpInvoiceLineRow,
    ErpInvoiceRow,
    ErpPaymentRow,
    ErpPdfRow,
    ErpSyncCursorRow,
    ErpSyncIssueRow,
    ErpWritebackRow,
)
from .pipeline import PageCommits
from .progress import ProgressCallback, ProgressEvent, StreamCounter, SyncReport
from .settings import SyncSettings
from .views import AccountSetupView, ConnectionView, CursorView, InvoiceView, SyncStatus
from .writeback import WritebackMixin

#: the order entities are synced in (customers first, so invoices find their customer)
ENTITY_ORDER: tuple[SyncEntity, ...] = (
    SyncEntity.CUSTOMERS, SyncEntity.INVOICES, SyncEntity.CREDIT_MEMOS, SyncEntity.PAYMENTS,
)
PHASE_RECENT, PHASE_HISTORY, PHASE_FULL, PHASE_DELTA = "recent", "history", "full", "delta"
INITIAL_PHASES = (PHASE_RECENT, PHASE_HISTORY)
WINDOW_STREAMS = (PHASE_RECENT, PHASE_HISTORY, PHASE_FULL)
PENDING, CONNECTED, ERROR = "pending", "connected", "error"
PDF_BATCH = 10


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local_owner(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer runs (killed, crashed)."""
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except OSError:
        return False


def _newest_first(recent: ErpSyncCursorRow | None) -> bool:
    """True when an entity's initial sync is one newest-first stream (its ``recent`` cursor
    is unbounded); False for two windows (``recent`` from the boundary, ``history`` before it:
    connections made before newest-first reads, or a plugin that cannot read newest first)."""
    return recent is not None and recent.since is None and recent.until is None


class _OldestFirst(Exception):
    """The plugin answered a newest-first read oldest first (it does not support the order)."""


@dataclass
class _Run:
    company_id: str
    owner: str
    erp: ErpClient
    account: Account
    report: SyncReport
    progress: ProgressCallback | None
    default_currency: str | None
    boundary: datetime | None = None
    #: page COMMITs on a helper thread while the next page is read (core/sync/pipeline.py)
    commits: PageCommits = field(default_factory=PageCommits)


class ErpSyncService(WritebackMixin, EventsMixin):
    """Facade of the ERP sync (one instance serves every company of a store).

    :param store: the state store (migrated).
    :param plugins: the loaded plugin manager; ERP plugins are called through ``plugins.erp(...)``.
    :param settings: :class:`SyncSettings` (``PAYWEAVE_SYNC_*``).
    :param clock: payweave's clock (tests pass a manual one).
    :param queue: the durable job queue; when given, notifications, renewals and write-back
        retries become jobs instead of running inline.
    :param public_base_url: payweave's public URL; webhook subscriptions deliver to
        ``{public_base_url}/erp/{company_id}/notifications``.
    :param document_event_handler: receives pulled document events (DESIGN 5a), typically
        ``PaymentEngine.handle_event``.
    """

    def __init__(self, store: Store, plugins: PluginManager, *, settings: SyncSettings | None = None,
                 clock: Clock = SYSTEM_CLOCK, queue: JobQueue | None = None, public_base_url: str | None = None,
                 document_event_handler: DocumentEventHandler | None = None) -> None:
        self.store = store
        self.plugins = plugins
        self.settings = settings or SyncSettings()
        self.clock = clock
        self.queue = queue
        self.public_base_url = (public_base_url or plugins.settings.service.public_base_url).rstrip("/")
        self.document_event_handler = document_event_handler
        self.log = get_logger(component="erp-sync")
        self._accounts: dict[str, tuple[tuple[Any, ...], Account]] = {}
        #: secret account overrides given to connect(): used in this process, never stored
        self._secret_overrides: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _owner_id() -> str:
        return _owner_id()

    # =========================================================================== accounts/plugins
    def _default_plugin(self) -> str:
        erps = [p.name for p in self.plugins.active(PluginKind.ERP)]
        if len(erps) != 1:
            raise ConfigurationError(
                f"Name the ERP plugin to connect ({', '.join(erps) or 'none is loaded'}).",
                details={"plugins": erps})
        return erps[0]

    def _settings_fields(self, plugin: str) -> dict[str, Any]:
        info = self.plugins.get(plugin).info
        model = info.settings_model if info else None
        return dict(model.model_fields) if model is not None else {}

    def _account(self, plugin: str, account_name: str, erp_company_id: str | None,
                 overrides: dict[str, Any]) -> Account:
        values = dict(overrides)
        if erp_company_id and "company_id" in self._settings_fields(plugin):
            values["company_id"] = erp_company_id
        return self.plugins.account(plugin, account_name, **values)

    def _erp(self, company_id: str, conn: ErpConnectionRow | None = None) -> tuple[ErpClient, Account]:
        conn = conn or self._connection_row(company_id)
        overrides = {**(conn.account_overrides or {}), **self._secret_overrides.get(company_id, {})}
        key = (conn.plugin, conn.account_name, conn.erp_company_id, repr(sorted(overrides.items())))
        cached = self._accounts.get(company_id)
        if cached is None or cached[0] != key:
            account = self._account(conn.plugin, conn.account_name, conn.erp_company_id, overrides)
            self._accounts[company_id] = cached = (key, account)
        return self.plugins.erp(conn.plugin), cached[1]

    # =========================================================================== connections
    def connect(self, *, plugin: str | None = None, account_name: str = "default", erp_company_id: str | None = None,
                company_id: str | None = None, overrides: dict[str, Any] | None = None,
                default_currency: str | None = None, run_initial: bool = True,
                progress: ProgressCallback | None = None) -> ConnectionView:
        """Connect a company: status **Pending**, then (``run_initial``) the initial sync, after
        which it is **Connected**. Connecting a connected company again changes nothing (and
        resumes an interrupted initial sync)."""
        plugin = plugin or self._default_plugin()
        self.plugins.get(plugin, PluginKind.ERP)
        overrides = dict(overrides or {})
        fields = self._settings_fields(plugin)
        secret = {k: v for k, v in overrides.items() if k in fields and "SecretStr" in str(fields[k].annotation)}
        public = {k: v for k, v in overrides.items() if k not in secret and k != "company_id"}
        erp_company_id = erp_company_id or overrides.get("company_id")
        base = self._account(plugin, account_name, None, {**public, **secret})
        if not erp_company_id:
            erp_company_id = getattr(base.settings, "company_id", None) or None
        erp = self.plugins.erp(plugin)
        name = ""
        companies: list[Any] = []
        # A known company is checked by the initial sync's first read (no request of its own);
        # an unknown one is chosen from the ERP's list.
        if not (erp_company_id and run_initial):
            try:
                companies = erp.list_companies(base)
            except NotSupported:
                companies = []
        if not erp_company_id:
            if len(companies) != 1:
                listed = "; ".join(f"{c.company_id} ({c.display_name or c.name})" for c in companies) or "none listed"
                raise SyncError(f"Choose the ERP company to connect: {listed}.", code="erp_company_required",
                                details={"companies": [c.company_id for c in companies]})
            erp_company_id = companies[0].company_id
        erp_company_id = erp_company_id.lower()
        for c in companies:
            if c.company_id.lower() == erp_company_id:
                name = c.display_name or c.name
        if companies and not name:
            raise SyncError(f"The ERP has no company {erp_company_id}.", code="erp_company_unknown",
                            details={"company": erp_company_id})
        company_id = company_id or erp_company_id
        currency = normalize_currency(default_currency) if default_currency else None
        now = self.clock.now()
        created = False
        with self.store.transaction() as s:
            conn = s.get(ErpConnectionRow, company_id, with_for_update=True)
            if conn is not None:
                if conn.plugin != plugin or conn.erp_company_id != erp_company_id:
                    raise ConnectionExists(
                        f"{company_id} is connected to {conn.plugin} company {conn.erp_company_id} already.",
                        details={"company_id": company_id})
                conn.account_overrides = public or conn.account_overrides
                conn.default_currency = currency or conn.default_currency
                conn.erp_company_name = name or conn.erp_company_name
                conn.updated_at = now
            else:
                boundary = now - timedelta(days=self.settings.recent_days)
                conn = ErpConnectionRow(
                    company_id=company_id, plugin=plugin, account_name=account_name, account_overrides=public,
                    erp_company_id=erp_company_id, erp_company_name=name, default_currency=currency, status=PENDING,
                    status_reason="Initial sync: last 12 months first, then all history.", phase=PHASE_RECENT,
                    initial_started_at=now, recent_boundary=boundary, client_state=secrets.token_urlsafe(32),
                    progress={}, created_at=now, updated_at=now,
                )
                s.add(conn)
                self._create_cursors(s, company_id, boundary, now)
                created = True
                self.log.info("erp.connect", company=company_id, plugin=plugin, erp_company=erp_company_id)
        if secret:
            self._secret_overrides[company_id] = secret
        if run_initial:
            try:
                self.run_sync(company_id, progress=progress)
            except RemoteNotFound as exc:
                if created and not companies and self._forget_unread_connection(company_id):
                    raise SyncError(f"The ERP has no company {erp_company_id} ({exc.message}).",
                                    code="erp_company_unknown", details={"company": erp_company_id}) from None
                raise
            self.schedule_next_poll(company_id)
        elif self.queue is not None:  # a worker runs the initial sync
            from .jobs import ACTION_SYNC, enqueue_erp_job

            with self.store.transaction() as s:
                enqueue_erp_job(self.queue, s, company_id=company_id, action=ACTION_SYNC)
        return self.connection(company_id)

    def _forget_unread_connection(self, company_id: str) -> bool:
        """Remove a connection whose initial sync could not read a single page (the ERP company
        does not exist); False (and nothing removed) once anything was read."""
        with self.store.transaction() as s:
            cursors = list(s.scalars(select(ErpSyncCursorRow).where(ErpSyncCursorRow.company_id == company_id)))
            if any(c.pages for c in cursors):
                return False
            for c in cursors:
                s.delete(c)
            conn = s.get(ErpConnectionRow, company_id)
            if conn is not None:
                s.delete(conn)
        self._accounts.pop(company_id, None)
        return True

    def _create_cursors(self, s: Session, company_id: str, boundary: datetime, now: datetime) -> None:
        def add(entity: SyncEntity, stream: str, **kw: Any) -> None:
            s.add(ErpSyncCursorRow(company_id=company_id, entity=entity.value, stream=stream, state="pending",
                                   pages=0, records=0, requests=0, updated_at=now, **kw))

        for entity in ENTITY_ORDER:
            # one stream per entity, newest first (see _initial_cursor): ``recent`` reads it
            # past the boundary, ``history`` goes on from there (its ``until`` bounds a restart)
            add(entity, PHASE_RECENT)
            add(entity, PHASE_HISTORY, until=boundary)
            add(entity, PHASE_DELTA)  # its start is set by the recent stream's first page
        # document events: only what happens from now on (never replay old releases)
        add(SyncEntity.DOCUMENT_EVENTS, PHASE_DELTA,
            since=now - timedelta(seconds=self.settings.delta_overlap_seconds))

    def _connection_row(self, company_id: str) -> ErpConnectionRow:
        with self.store.transaction() as s:
            conn = s.get(ErpConnectionRow, company_id)
            if conn is None:
                raise ConnectionNotFound(f"{company_id} is not connected to an ERP (`payweave connect`).",
                                         details={"company_id": company_id})
            s.expunge(conn)
            return conn

    def connection(self, company_id: str) -> ConnectionView:
        return ConnectionView.of(self._connection_row(company_id))

    def connections(self) -> list[ConnectionView]:
        with self.store.transaction() as s:
            return [ConnectionView.of(r) for r in s.scalars(select(ErpConnectionRow).order_by(ErpConnectionRow.company_id))]

    # =========================================================================== lease
    @contextlib.contextmanager
    def _leased(self, company_id: str) -> Iterator[tuple[str, ErpConnectionRow]]:
        owner = _owner_id()
        now = self.clock.now()
        with self.store.transaction() as s:
            conn = s.get(ErpConnectionRow, company_id, with_for_update=True)
            if conn is None:
                raise ConnectionNotFound(f"{company_id} is not connected to an ERP (`payweave connect`).",
                                         details={"company_id": company_id})
            held = conn.lease_owner and conn.lease_expires_at and conn.lease_expires_at > now
            if held and not _dead_local_owner(conn.lease_owner or ""):
                raise SyncBusy(f"Another sync of {company_id} is running ({conn.lease_owner}).",
                               details={"company_id": company_id, "owner": conn.lease_owner})
            if held:
                self.log.warning("erp.sync.lease_taken_over", company=company_id, previous=conn.lease_owner)
            conn.lease_owner = owner
            conn.lease_expires_at = now + timedelta(seconds=self.settings.lease_seconds)
            conn.last_sync_started_at = now
            s.flush()
            s.expunge(conn)
        try:
            yield owner, conn
        finally:
            with self.store.transaction() as s:
                s.execute(update(ErpConnectionRow)
                          .where(ErpConnectionRow.company_id == company_id, ErpConnectionRow.lease_owner == owner)
                          .values(lease_owner=None, lease_expires_at=None))

    def _fence(self, s: Session, run: _Run, now: datetime) -> ErpConnectionRow:
        conn = s.get(ErpConnectionRow, run.company_id, with_for_update=True)
        if conn is None or conn.lease_owner != run.owner:
            raise LeaseLost(f"The sync of {run.company_id} lost its lease to {conn.lease_owner if conn else None}.")
        conn.lease_expires_at = now + timedelta(seconds=self.settings.lease_seconds)
        conn.updated_at = now
        return conn

    # =========================================================================== running
    def run_sync(self, company_id: str, *, full: bool = False, entities: Sequence[SyncEntity] | None = None,
                 progress: ProgressCallback | None = None) -> SyncReport:
        """One sync run: finish the initial sync if it is not complete (Pending -> Connected),
        finish a pending ``full`` re-read, then read the deltas (``entities`` limits them) and
        store PDFs. ``full`` starts a re-read of every record (repair; status stays Connected)."""
        report = SyncReport(company_id)
        with heap_frozen(), bound_contextvars(company=company_id), self._leased(company_id) as (owner, conn):
            erp, account = self._erp(company_id, conn)
            run = _Run(company_id, owner, erp, account, report, progress, conn.default_currency, conn.recent_boundary)
            try:
                if full and conn.connected_at is not None:
                    self._start_full(run)
                initial = conn.connected_at is None
                if initial:
                    self._run_initial(run)
                self._run_phase(run, PHASE_FULL, ENTITY_ORDER, pdfs=True)
                wanted = list(entities) if entities is not None else [*ENTITY_ORDER, SyncEntity.DOCUMENT_EVENTS]
                if not self.settings.document_events and SyncEntity.DOCUMENT_EVENTS in wanted:
                    wanted.remove(SyncEntity.DOCUMENT_EVENTS)
                if not initial:
                    # the run that completes the initial sync reads no delta: each delta stream
                    # starts where its initial stream started, so the next run (a poll or a
                    # notification) picks up whatever changed meanwhile
                    self._run_phase(run, PHASE_DELTA, wanted, pdfs=SyncEntity.INVOICES in wanted)
            except BaseException as exc:
                self._failed(run, exc)
                raise
            finally:
                run.commits.close()
            self._succeeded(run)
        if self.document_event_handler is not None:
            report.events_dispatched = self.dispatch_document_events(company_id).dispatched
        return report

    def sync_entities(self, company_id: str, entities: Sequence[SyncEntity],
                      progress: ProgressCallback | None = None) -> SyncReport:
        """Delta-sync only ``entities`` now (what a notification names)."""
        return self.run_sync(company_id, entities=entities, progress=progress)

    def _emit(self, run: _Run, event: ProgressEvent) -> None:
        if run.progress is not None:
            run.progress(event)

    def _start_full(self, run: _Run) -> None:
        now = self.clock.now()
        with self.store.transaction() as s:
            self._fence(s, run, now)
            for entity in ENTITY_ORDER:
                row = s.get(ErpSyncCursorRow, (run.company_id, entity.value, PHASE_FULL), with_for_update=True)
                if row is None:
                    s.add(ErpSyncCursorRow(company_id=run.company_id, entity=entity.value, stream=PHASE_FULL,
                                           state="pending", pages=0, records=0, requests=0, updated_at=now))
                elif row.state == "done":
                    row.state, row.since, row.until, row.page_token = "pending", None, None, None
                    row.pages = row.records = row.requests = 0
                    row.started_at = row.finished_at = None
                    row.updated_at = now
                # running (interrupted): resumes where it stopped; unsupported stays so

    def _run_initial(self, run: _Run) -> None:
        for phase in INITIAL_PHASES:
            self._run_phase(run, phase, ENTITY_ORDER, pdfs=True)
        now = self.clock.now()
        with self.store.transaction() as s:
            conn = self._fence(s, run, now)
            conn.status, conn.status_reason, conn.phase = CONNECTED, None, PHASE_DELTA
            conn.connected_at = now
        run.report.status = CONNECTED
        self.log.info("erp.connected", company=run.company_id)
        self._emit(run, ProgressEvent(run.company_id, "status", PHASE_DELTA, status=CONNECTED))

    def _run_phase(self, run: _Run, phase: str, entities: Sequence[SyncEntity], *, pdfs: bool) -> None:
        """Run ``phase``'s stream of each entity in order; one transaction records the phase and
        marks the streams running (they are this run's alone: it holds the company's lease)."""
        now = self.clock.now()
        cursors: dict[SyncEntity, SyncCursor] = {}
        with self.store.transaction() as s:
            rows = {r.entity: r for r in s.scalars(select(ErpSyncCursorRow).where(
                ErpSyncCursorRow.company_id == run.company_id, ErpSyncCursorRow.stream == phase).with_for_update())}
            todo = [e for e in entities if e.value in rows and rows[e.value].state != "unsupported"
                    and (phase == PHASE_DELTA or rows[e.value].state != "done")]
            if not todo:
                conn = s.get(ErpConnectionRow, run.company_id)
                if not (phase == PHASE_HISTORY and conn is not None and conn.phase == PHASE_RECENT):
                    return
                # every stream ended inside the last 12 months: the history phase is shown, empty
            conn = self._fence(s, run, now)
            if phase in INITIAL_PHASES:
                conn.status = PENDING
                conn.status_reason = ("Initial sync: the last 12 months." if phase == PHASE_RECENT
                                      else "Initial sync: all history before the last 12 months.")
            conn.phase = phase
            status = conn.status
            recent = {}
            if phase == PHASE_HISTORY:
                recent = {r.entity: r for r in s.scalars(select(ErpSyncCursorRow).where(
                    ErpSyncCursorRow.company_id == run.company_id, ErpSyncCursorRow.stream == PHASE_RECENT))}
            for entity in todo:
                row = rows[entity.value]
                row.state = "running"
                if phase == PHASE_DELTA or row.started_at is None:
                    row.started_at = now
                row.updated_at = now
                newest_first = phase in INITIAL_PHASES and _newest_first(row if phase == PHASE_RECENT
                                                                         else recent.get(entity.value))
                cursors[entity] = SyncCursor(since=row.since, until=row.until, page_token=row.page_token,
                                             newest_first=newest_first)
        run.report.phase, run.report.status = phase, status
        self._emit(run, ProgressEvent(run.company_id, "phase", phase, status=status))
        if phase == PHASE_DELTA and len(todo) > 1:
            todo = self._run_many(run, phase, {e: cursors[e] for e in todo})
            if todo:
                cursors = self._stored_cursors(run.company_id, phase, todo)
        for entity in todo:
            self._run_stream(run, entity, phase, cursors[entity])
        if pdfs:
            self._sync_pdfs(run, phase)

    def _stored_cursors(self, company_id: str, stream: str, entities: Sequence[SyncEntity]) -> dict[SyncEntity, SyncCursor]:
        with self.store.transaction() as s:
            rows = {r.entity: r for r in s.scalars(select(ErpSyncCursorRow).where(
                ErpSyncCursorRow.company_id == company_id, ErpSyncCursorRow.stream == stream))}
            return {e: SyncCursor(since=rows[e.value].since, until=rows[e.value].until,
                                  page_token=rows[e.value].page_token) for e in entities}

    def _run_many(self, run: _Run, stream: str, cursors: dict[SyncEntity, SyncCursor]) -> list[SyncEntity]:
        """Read several delta streams through the plugin's ``erp_read_many_changes`` (fewer ERP
        requests: BC's ``$batch``). Returns the entities left to read one by one: none, or,
        when the plugin cannot read them together, those it did not finish."""
        counters = {e: run.report.counter(stream, e.value) for e in cursors}
        finished: set[SyncEntity] = set()
        pages = run.erp.read_many_changes(run.account, cursors, self.settings.page_size)
        try:
            with run.commits.settled():
                for page in pages:
                    entity = page.entity
                    if entity in finished:
                        raise PluginBug(f"Plugin {run.erp.name!r} yielded a {entity.value} page after that stream ended.")
                    self._commit_page(run, entity, stream, page, counters[entity])
                    if page.next_cursor is None:
                        finished.add(entity)
        except (NotSupported, InvalidRequest) as exc:
            left = [e for e in cursors if e not in finished]
            self.log.info("erp.sync.read_many_fallback", entities=[e.value for e in left], reason=exc.message)
            return left
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        now = self.clock.now()
        with self.store.transaction() as s:
            conn = self._fence(s, run, now)
            for entity in cursors:
                counter = counters[entity]
                if entity not in finished:
                    # no page, or the stream ended on a resume point (the document-event log)
                    row = s.get(ErpSyncCursorRow, (run.company_id, entity.value, stream), with_for_update=True)
                    assert row is not None
                    self._finish_stream(s, row, stream, conn, now, window_ended=False)
                    self._store_progress(conn, stream, entity.value, counter, row.high_water)
                counter.done = True
        for entity in cursors:
            c = counters[entity]
            self._emit(run, ProgressEvent(run.company_id, "stream_done", stream, entity.value, c.pages, c.records,
                                          c.requests, c.elapsed))
        return []

    # ---------------------------------------------------------------------------- one stream
    def _run_stream(self, run: _Run, entity: SyncEntity, stream: str, cursor: SyncCursor) -> None:
        counter = run.report.counter(stream, entity.value)
        restarted = False
        while True:
            try:
                self._consume(run, entity, stream, cursor, counter)
                break
            except _OldestFirst:
                self.log.info("erp.sync.not_newest_first", entity=entity.value)
                cursor = self._to_windows(run, entity)
                continue
            except NotSupported as exc:
                self._unsupported(run, entity, exc)
                counter.note = "not supported by the ERP plugin"
                counter.done = True
                self._save_progress(run, stream, entity.value, counter)
                self._emit(run, ProgressEvent(run.company_id, "stream_done", stream, entity.value, note=counter.note))
                return
            except InvalidRequest as exc:
                # an ERP resume token that no longer works (expired skiptoken): restart the
                # window from its start once (idempotent upserts), never skip it
                if (cursor.page_token and not restarted and counter.pages == 0
                        and entity is not SyncEntity.DOCUMENT_EVENTS and exc.code != "erp_record_unreadable"):
                    self.log.warning("erp.sync.token_refused", entity=entity.value, stream=stream, error=exc.message)
                    restarted = True
                    cursor = cursor.model_copy(update={"page_token": None})
                    with self.store.transaction() as s:
                        self._fence(s, run, self.clock.now())
                        row = s.get(ErpSyncCursorRow, (run.company_id, entity.value, stream), with_for_update=True)
                        assert row is not None
                        row.page_token = None
                    continue
                raise
        counter.done = True
        self._emit(run, ProgressEvent(run.company_id, "stream_done", stream, entity.value, counter.pages,
                                      counter.records, counter.requests, counter.elapsed))

    def _to_windows(self, run: _Run, entity: SyncEntity) -> SyncCursor:
        """Turn an entity's newest-first initial stream (not read yet) into the two windows."""
        with self.store.transaction() as s:
            self._fence(s, run, self.clock.now())
            recent = s.get(ErpSyncCursorRow, (run.company_id, entity.value, PHASE_RECENT), with_for_update=True)
            history = s.get(ErpSyncCursorRow, (run.company_id, entity.value, PHASE_HISTORY), with_for_update=True)
            assert recent is not None and history is not None
            recent.since, recent.page_token = run.boundary, None
            history.until, history.page_token = run.boundary, None
        return SyncCursor(since=run.boundary)

    def _consume(self, run: _Run, entity: SyncEntity, stream: str, cursor: SyncCursor, counter: StreamCounter) -> None:
        pages = run.erp.read_changes(run.account, entity, cursor, self.settings.page_size)
        last_next: SyncCursor | None = None
        any_page = False
        # the recent part of a newest-first stream ends after the first whole ERP response that
        # reached back past the boundary; the history goes on from that response's next page
        split = stream == PHASE_RECENT and cursor.newest_first and run.boundary is not None
        crossed = False
        try:
            with run.commits.settled():
                for page in pages:
                    if cursor.newest_first and not page.newest_first:
                        raise _OldestFirst()
                    any_page = True
                    if split and not crossed:
                        crossed = any(_stamp(r) is not None and _stamp(r) < run.boundary for r in page.records)  # type: ignore[operator]
                    pause = split and crossed and not page.partial and page.next_cursor is not None
                    self._commit_page(run, entity, stream, page, counter, hand_over=pause)
                    last_next = page.next_cursor
                    if pause:
                        return
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        if not any_page or last_next is not None:
            # no page at all, or the plugin ended on a resume point (the document-event log):
            # the stream is exhausted for this run; keep the stored resume point
            now = self.clock.now()
            with self.store.transaction() as s:
                conn = self._fence(s, run, now)
                row = s.get(ErpSyncCursorRow, (run.company_id, entity.value, stream), with_for_update=True)
                assert row is not None
                self._finish_stream(s, row, stream, conn, now, window_ended=False)
                counter.done = True
                self._store_progress(conn, stream, entity.value, counter, row.high_water)

    def _commit_page(self, run: _Run, entity: SyncEntity, stream: str, page: SyncPage, counter: StreamCounter, *,
                     hand_over: bool = False) -> None:
        """Apply a page and move its cursor, in one transaction, whose COMMIT runs on the run's
        helper thread while the caller reads the next page (:class:`PageCommits`; the caller
        reads inside ``run.commits.settled()``). ``hand_over``: the page ends the recent part of
        a newest-first stream; the history cursor takes over its next cursor."""
        if page.entity != entity:
            raise PluginBug(f"Plugin {run.erp.name!r} returned a {page.entity} page when asked for {entity.value}.")
        now = self.clock.now()
        records = page.records
        high = page.high_water
        if high is None and records:
            stamps = [_stamp(r) for r in records]
            high = max((t for t in stamps if t is not None), default=None)
        committed: list[ProgressEvent] = []

        def report() -> None:
            labelled(SYNC_RECORDS, entity.value).inc(len(records))
            self._emit(run, committed[0])

        with run.commits.transaction(self.store, on_committed=report) as s:
            conn = self._fence(s, run, now)
            stats = rules.apply_page(s, run.company_id, entity, records, now, default_currency=run.default_currency)
            row = s.get(ErpSyncCursorRow, (run.company_id, entity.value, stream), with_for_update=True)
            assert row is not None
            row.pages += 1
            row.records += len(records)
            row.requests += page.requests
            if high is not None and (row.high_water is None or high > row.high_water):
                row.high_water = high
            if stream == PHASE_RECENT and page.newest_first:
                # the delta starts where this stream started (its newest record, on the ERP's
                # clock): whatever changes while the history is read is the next delta's
                delta = s.get(ErpSyncCursorRow, (run.company_id, entity.value, PHASE_DELTA), with_for_update=True)
                if delta is not None and delta.since is None and delta.high_water is None:
                    start = high or conn.recent_boundary
                    overlap = timedelta(seconds=self.settings.delta_overlap_seconds)
                    delta.since = start - overlap if start is not None else None
                    delta.high_water = high
                    delta.updated_at = now
            nxt = page.next_cursor
            if nxt is None:
                self._finish_stream(s, row, stream, conn, now, window_ended=True)
                counter.done = True
            elif hand_over:
                history = s.get(ErpSyncCursorRow, (run.company_id, entity.value, PHASE_HISTORY), with_for_update=True)
                assert history is not None
                history.page_token = nxt.page_token
                history.updated_at = now
                self._finish_stream(s, row, stream, conn, now, window_ended=True)
                counter.done = True
            else:
                row.since, row.until, row.page_token = nxt.since, nxt.until, nxt.page_token
            row.updated_at = now
            counter.pages += 1
            counter.records += len(records)
            counter.requests += page.requests
            for name in ("inserted", "updated", "unchanged", "ignored", "stale", "issues"):
                setattr(counter, name, getattr(counter, name) + getattr(stats, name))
            self._store_progress(conn, stream, entity.value, counter, row.high_water)
            committed.append(ProgressEvent(run.company_id, "page", stream, entity.value, counter.pages,
                                           counter.records, counter.requests, counter.elapsed))

    @staticmethod
    def _store_progress(conn: ErpConnectionRow, stream: str, entity: str, counter: StreamCounter,
                        high_water: datetime | None) -> None:
        progress = dict(conn.progress or {})
        phase_progress = dict(progress.get(stream, {}))
        phase_progress[entity] = {**counter.as_json(), "high_water": high_water.isoformat() if high_water else None}
        progress[stream] = phase_progress
        conn.progress = progress

    def _save_progress(self, run: _Run, stream: str, entity: str, counter: StreamCounter) -> None:
        with self.store.transaction() as s:
            conn = self._fence(s, run, self.clock.now())
            row = s.get(ErpSyncCursorRow, (run.company_id, entity, stream))
            self._store_progress(conn, stream, entity, counter, row.high_water if row is not None else None)

    def _finish_stream(self, s: Session, row: ErpSyncCursorRow, stream: str, conn: ErpConnectionRow, now: datetime,
                       *, window_ended: bool) -> None:
        """The stream is exhausted for this run. Windows are done; the delta's next start is
        its high-water mark minus the overlap (when the window ended on the ERP's side)."""
        overlap = timedelta(seconds=self.settings.delta_overlap_seconds)
        row.state = "done"
        row.finished_at = now
        if stream in WINDOW_STREAMS:
            row.page_token = None
        elif window_ended:
            if row.high_water is not None:
                row.since = row.high_water - overlap
            row.page_token = None
        if stream == PHASE_RECENT and _newest_first(row):
            history = s.get(ErpSyncCursorRow, (row.company_id, row.entity, PHASE_HISTORY), with_for_update=True)
            if history is not None and history.page_token is None and history.state != "done":
                # the stream ended before the boundary: there is no history to read
                history.state, history.finished_at, history.updated_at = "done", now, now
        if stream == PHASE_RECENT:
            delta = s.get(ErpSyncCursorRow, (row.company_id, row.entity, PHASE_DELTA), with_for_update=True)
            if delta is not None and delta.high_water is None and delta.since is None:
                start = row.high_water or conn.recent_boundary
                delta.since = start - overlap if start is not None else None
                delta.high_water = row.high_water
                delta.updated_at = now

    def _unsupported(self, run: _Run, entity: SyncEntity, exc: NotSupported) -> None:
        now = self.clock.now()
        with self.store.transaction() as s:
            self._fence(s, run, now)
            for row in s.scalars(select(ErpSyncCursorRow).where(
                    ErpSyncCursorRow.company_id == run.company_id, ErpSyncCursorRow.entity == entity.value)):
                row.state = "unsupported"
                row.note = exc.message[:2000]
                row.page_token = None
                row.updated_at = now
        self.log.info("erp.sync.entity_unsupported", entity=entity.value, reason=exc.message)

    def _succeeded(self, run: _Run) -> None:
        now = self.clock.now()
        with self.store.transaction() as s:
            conn = self._fence(s, run, now)
            conn.last_sync_finished_at = now
            conn.last_sync_outcome = "ok"
            conn.last_error_code = conn.last_error = None
            if conn.connected_at is not None and conn.status != CONNECTED:
                conn.status, conn.status_reason = CONNECTED, None
                self._emit(run, ProgressEvent(run.company_id, "status", conn.phase, status=CONNECTED))
            run.report.status, run.report.phase = conn.status, conn.phase

    def _failed(self, run: _Run, exc: BaseException) -> None:
        if isinstance(exc, LeaseLost):
            return
        now = self.clock.now()
        if isinstance(exc, PayweaveError):
            code, message, retryable = exc.code, exc.message, exc.retryable
        elif isinstance(exc, Exception):
            code, message, retryable = "internal_error", f"{type(exc).__name__}: {exc}", False
        else:  # KeyboardInterrupt, SystemExit: interrupted, not broken
            code, message, retryable = "interrupted", "The sync was interrupted.", True
        try:
            with self.store.transaction() as s:
                conn = self._fence(s, run, now)
                conn.last_sync_finished_at = now
                conn.last_sync_outcome = "retry" if retryable else "failed"
                conn.last_error_code, conn.last_error = code, message[:4000]
                if not retryable:
                    conn.status, conn.status_reason = ERROR, message[:4000]
                elif conn.connected_at is None:
                    conn.status_reason = f"Initial sync waits to retry: {message}"[:4000]
                status = conn.status
        except LeaseLost:
            return
        run.report.status = status
        self.log.warning("erp.sync.failed", code=code, error=message, retryable=retryable)
        self._emit(run, ProgressEvent(run.company_id, "status", run.report.phase, status=status, note=message))

    # ---------------------------------------------------------------------------- PDFs
    def _sync_pdfs(self, run: _Run, phase: str) -> int:
        """Store the PDFs of posted invoices that have none yet (scope: ``settings.pdfs``), a
        small batch per transaction (a crash costs at most one batch of downloads)."""
        if self.settings.pdfs == "none":
            return 0
        counter = run.report.counter(phase, "pdfs")
        stored = 0
        while True:
            query = select(ErpInvoiceRow.invoice_id).where(
                ErpInvoiceRow.company_id == run.company_id, ErpInvoiceRow.origin == rules.ORIGIN_ERP,
                ErpInvoiceRow.pdf_sha256.is_(None), ErpInvoiceRow.pdf_attempts < self.settings.pdf_max_attempts,
                ErpInvoiceRow.erp_status.in_(sorted(rules.POSTED_STATUSES)))
            if self.settings.pdfs == "open":
                query = query.where(ErpInvoiceRow.status == "open")
            query = query.order_by(ErpInvoiceRow.invoice_date.desc(), ErpInvoiceRow.invoice_id).limit(PDF_BATCH)
            with self.store.transaction() as s:
                batch = list(s.scalars(query))
            if not batch:
                break
            fetched: list[tuple[str, bytes | None, str | None]] = []
            unsupported: NotSupported | None = None
            for invoice_id in batch:
                try:
                    data = run.erp.read_invoice_pdf(run.account, invoice_id)
                except NotSupported as exc:
                    unsupported = exc
                    break
                except (RemoteNotFound, InvalidRequest) as exc:
                    fetched.append((invoice_id, None, exc.message))
                    continue
                if not data.startswith(b"%PDF-"):
                    fetched.append((invoice_id, None, "The ERP answered something that is not a PDF."))
                else:
                    fetched.append((invoice_id, data, None))
            now = self.clock.now()
            with self.store.transaction() as s:
                self._fence(s, run, now)
                for invoice_id, data, error in fetched:
                    invoice = s.get(ErpInvoiceRow, (run.company_id, invoice_id), with_for_update=True)
                    assert invoice is not None
                    if data is None:
                        invoice.pdf_attempts += 1
                        invoice.pdf_error = (error or "")[:2000]
                        continue
                    sha = hashlib.sha256(data).hexdigest()
                    if s.get(ErpPdfRow, (run.company_id, sha)) is None:
                        s.add(ErpPdfRow(company_id=run.company_id, sha256=sha, size=len(data), content=data,
                                        created_at=now))
                        s.flush()
                    invoice.pdf_sha256, invoice.pdf_fetched_at, invoice.pdf_error = sha, now, None
                    stored += 1
                    counter.records += 1
            counter.requests += 3 * len(fetched)
            del fetched
            self._emit(run, ProgressEvent(run.company_id, "pdf", phase, "pdfs", 0, counter.records, counter.requests,
                                          counter.elapsed))
            if unsupported is not None:
                self.log.info("erp.pdf.unsupported", reason=unsupported.message)
                counter.note = "not supported by the ERP plugin"
                break
        counter.done = True
        run.report.pdfs += stored
        self._emit(run, ProgressEvent(run.company_id, "stream_done", phase, "pdfs", 0, counter.records,
                                      counter.requests, counter.elapsed, note=counter.note))
        return stored

    def invoice_pdf(self, company_id: str, invoice_id: str) -> bytes | None:
        """The stored PDF of an invoice (None when none is stored yet)."""
        with self.store.transaction() as s:
            invoice = s.get(ErpInvoiceRow, (company_id, invoice_id.lower()))
            if invoice is None:
                raise InvoiceNotFound(f"There is no invoice {invoice_id}.", details={"invoice_id": invoice_id})
            if invoice.pdf_sha256 is None:
                return None
            pdf = s.get(ErpPdfRow, (company_id, invoice.pdf_sha256))
            return pdf.content if pdf is not None else None

    # =========================================================================== webhooks
    def notification_url(self, company_id: str) -> str:
        return f"{self.public_base_url}/erp/{company_id}/notifications"

    def ensure_subscriptions(self, company_id: str, notification_url: str | None = None) -> datetime | None:
        """Create or renew the ERP's webhook subscriptions (the ERP validates the URL with a
        handshake; payweave's endpoint answers it). Returns the earliest expiry and, with a
        queue, schedules the renewal before it."""
        conn = self._connection_row(company_id)
        url = notification_url or conn.notification_url or self.notification_url(company_id)
        erp, account = self._erp(company_id)
        expiry: datetime | None = None
        for attempt in range(1, 4):
            try:
                expiry = erp.ensure_subscriptions(account, url, conn.client_state)
                break
            except ConcurrencyConflict as exc:  # renewed concurrently (stale ETag): re-read and retry
                self.log.info("erp.subscriptions.conflict", attempt=attempt, error=exc.message)
                if attempt == 3:
                    self._subscription_state(company_id, url, None, exc.message)
                    raise
            except NotSupported as exc:
                self._subscription_state(company_id, url, None, f"No webhooks ({exc.message}); polling only.")
                return None
            except PayweaveError as exc:
                self._subscription_state(company_id, url, conn.subscriptions_expire_at, exc.message)
                raise
        self._subscription_state(company_id, url, expiry, None)
        self.log.info("erp.subscriptions.ok", expires=expiry.isoformat() if expiry else None)
        return expiry

    def _subscription_state(self, company_id: str, url: str, expiry: datetime | None, error: str | None) -> None:
        with self.store.transaction() as s:
            conn = s.get(ErpConnectionRow, company_id, with_for_update=True)
            assert conn is not None
            conn.notification_url = url
            conn.subscriptions_expire_at = expiry
            conn.subscriptions_error = error[:2000] if error else None
            conn.updated_at = self.clock.now()
            if expiry is not None and self.queue is not None:
                from .jobs import ACTION_RENEW, enqueue_erp_job

                due = max(expiry - timedelta(seconds=self.settings.subscription_renew_margin_seconds),
                          self.clock.now() + timedelta(minutes=5))
                enqueue_erp_job(self.queue, s, company_id=company_id, action=ACTION_RENEW, due_at=due)

    def renew_subscriptions_if_due(self, company_id: str) -> datetime | None:
        """Renew when the earliest subscription expires within the renewal margin (or none is known)."""
        conn = self._connection_row(company_id)
        expiry = conn.subscriptions_expire_at
        margin = timedelta(seconds=self.settings.subscription_renew_margin_seconds)
        if expiry is not None and self.clock.now() < expiry - margin:
            return expiry
        return self.ensure_subscriptions(company_id)

    def handle_notification(self, company_id: str, request: WebhookRequest) -> list[SyncEntity]:
        """Verify an ERP change notification (the plugin checks the clientState) and sync the
        entities it names: as a job when the service has a queue, else at once. During the
        initial sync nothing is queued: its first delta covers the change."""
        conn = self._connection_row(company_id)
        erp, account = self._erp(company_id)
        entities = erp.parse_notification(account, request, conn.client_state)
        if not entities or conn.connected_at is None:
            return entities
        if self.queue is not None:
            from .jobs import ACTION_SYNC, enqueue_erp_job

            with self.store.transaction() as s:
                enqueue_erp_job(self.queue, s, company_id=company_id, action=ACTION_SYNC,
                                entities=[e.value for e in entities])
        else:
            self.sync_entities(company_id, entities)
        return entities

    def schedule_next_poll(self, company_id: str) -> None:
        """Enqueue the fallback delta poll (hourly with live webhooks, else every poll interval)."""
        if self.queue is None:
            return
        conn = self._connection_row(company_id)
        now = self.clock.now()
        live = conn.subscriptions_expire_at is not None and conn.subscriptions_expire_at > now
        interval = (self.settings.poll_interval_with_webhooks_seconds if live else self.settings.poll_interval_seconds)
        from .jobs import ACTION_SYNC, enqueue_erp_job

        with self.store.transaction() as s:
            enqueue_erp_job(self.queue, s, company_id=company_id, action=ACTION_SYNC,
                            due_at=now + timedelta(seconds=interval))

    # =========================================================================== account setup
    def ledger_accounts(self, company_id: str) -> list[LedgerAccount]:
        """The ERP's G/L accounts and bank accounts to choose from (blocked ones included, marked)."""
        erp, account = self._erp(company_id)
        return erp.list_ledger_accounts(account)

    def set_account_setup(self, company_id: str, *, payments_account: str, bank_account: str, fee_account: str,
                          actor: str = "") -> AccountSetupView:
        """Choose (by id or number) the G/L account that records payments (the clearing account
        the customer payment journal balances against), the bank account that receives payouts,
        and the G/L account for PSP fees. Validated against the ERP: right kind, not blocked,
        the two G/L accounts different. Pending write-backs waiting for this are retried."""
        accounts = self.ledger_accounts(company_id)

        def pick(ref: str, kind: str, role: str) -> LedgerAccount:
            ref_l = ref.strip().lower()
            found = [a for a in accounts if a.account_id.lower() == ref_l or a.number.lower() == ref_l]
            if not found:
                raise AccountSetupInvalid(f"The ERP has no account {ref!r} for the {role}.",
                                          details={"role": role, "account": ref})
            match = next((a for a in found if a.kind == kind), None)
            if match is None:
                what = "a G/L account" if kind == "gl_account" else "a bank account"
                raise AccountSetupInvalid(f"The {role} must be {what}; {ref!r} is a {found[0].kind.replace('_', ' ')}.",
                                          details={"role": role, "account": ref, "kind": found[0].kind})
            if match.blocked:
                raise AccountSetupInvalid(f"Account {match.number} ({match.name}) is blocked in the ERP; it cannot be "
                                          f"the {role}.", details={"role": role, "account": match.number})
            return match

        payments = pick(payments_account, "gl_account", "payments account")
        bank = pick(bank_account, "bank_account", "deposits bank account")
        fee = pick(fee_account, "gl_account", "fee account")
        if payments.account_id == fee.account_id:
            raise AccountSetupInvalid("The payments (clearing) account and the fee account must be different accounts.",
                                      details={"account": payments.number})
        now = self.clock.now()
        with self.store.transaction() as s:
            row = s.get(ErpAccountSetupRow, company_id, with_for_update=True)
            if row is None:
                row = ErpAccountSetupRow(company_id=company_id)
                s.add(row)
            for prefix, acc in (("payments_account", payments), ("bank_account", bank), ("fee_account", fee)):
                setattr(row, f"{prefix}_id", acc.account_id)
                setattr(row, f"{prefix}_number", acc.number[:50])
                setattr(row, f"{prefix}_name", acc.name[:200])
            row.updated_at, row.updated_by = now, actor[:200]
            if self.queue is not None:
                for wb in s.scalars(select(ErpWritebackRow).where(
                        ErpWritebackRow.company_id == company_id, ErpWritebackRow.status == "pending")):
                    self._enqueue_writeback_job(s, wb)
            s.flush()
            view = AccountSetupView.of(row)
        self.log.info("erp.accounts.saved", payments=payments.number, bank=bank.number, fee=fee.number)
        return view

    def account_setup(self, company_id: str) -> AccountSetupView | None:
        with self.store.transaction() as s:
            row = s.get(ErpAccountSetupRow, company_id)
            return AccountSetupView.of(row) if row is not None else None

    # =========================================================================== local records
    def create_local_customer(self, company_id: str, *, name: str, email: str = "", number: str = "",
                              currency: str = "") -> str:
        """A customer created in payweave: kept here, never written to the ERP."""
        self._connection_row(company_id)
        now = self.clock.now()
        customer_id = f"pw-{uuid.uuid4()}"
        with self.store.transaction() as s:
            s.add(ErpCustomerRow(company_id=company_id, customer_id=customer_id, number=number[:50], name=name[:200],
                                 email=email[:200], currency=currency.upper()[:3], blocked="",
                                 origin=rules.ORIGIN_PAYWEAVE, archived=False, created_at=now, updated_at=now))
        return customer_id

    def create_local_invoice(self, company_id: str, *, customer_id: str, number: str, amount: Money,
                             invoice_date: date | None = None, due_date: date | None = None) -> str:
        """An invoice created in payweave: collectable here, never written to the ERP."""
        self._connection_row(company_id)
        now = self.clock.now()
        invoice_id = f"pw-{uuid.uuid4()}"
        minor = amount.minor_units
        with self.store.transaction() as s:
            s.add(ErpInvoiceRow(
                company_id=company_id, invoice_id=invoice_id, number=number[:50], customer_id=customer_id,
                customer_number="", invoice_date=invoice_date or now.date(), due_date=due_date,
                currency=amount.currency, erp_status="", status="open", total_excl_minor=minor, total_tax_minor=0,
                total_incl_minor=minor, remaining_minor=minor, open_minor=minor, settled_minor=0, settlements=0,
                origin=rules.ORIGIN_PAYWEAVE, archived=False, paid_via_payweave=False, ignored_erp_changes=0,
                content_hash="", pdf_attempts=0, created_at=now, updated_at=now))
        return invoice_id

    # =========================================================================== reading
    def invoice(self, company_id: str, invoice_id: str) -> InvoiceView:
        with self.store.transaction() as s:
            row = s.get(ErpInvoiceRow, (company_id, invoice_id.lower()))
            if row is None:
                raise InvoiceNotFound(f"There is no invoice {invoice_id}.", details={"invoice_id": invoice_id})
            lines = s.scalar(select(func.count()).select_from(ErpInvoiceLineRow).where(
                ErpInvoiceLineRow.company_id == company_id, ErpInvoiceLineRow.invoice_id == row.invoice_id)) or 0
            return _invoice_view(row, int(lines))

    def status(self, company_id: str) -> SyncStatus:
        """Connection status and phase, counts, cursors (high-water marks), account setup."""
        conn = self.connection(company_id)

        def count(s: Session, model: Any, *where: Any) -> int:
            return int(s.scalar(select(func.count()).select_from(model).where(model.company_id == company_id,
                                                                              *where)) or 0)

        def grouped(s: Session, model: Any, column: Any) -> dict[str, int]:
            return {k: int(n) for k, n in s.execute(select(column, func.count()).where(
                model.company_id == company_id).group_by(column))}

        with self.store.transaction() as s:
            cursors = tuple(CursorView.of(r) for r in s.scalars(select(ErpSyncCursorRow).where(
                ErpSyncCursorRow.company_id == company_id).order_by(ErpSyncCursorRow.stream, ErpSyncCursorRow.entity)))
            counts = {
                "customers": count(s, ErpCustomerRow),
                "invoices": count(s, ErpInvoiceRow),
                "invoice_lines": count(s, ErpInvoiceLineRow),
                "credit_memos": count(s, ErpCreditMemoRow),
                "payments": count(s, ErpPaymentRow),
                "pdfs": count(s, ErpInvoiceRow, ErpInvoiceRow.pdf_sha256.is_not(None)),
            }
            invoices = grouped(s, ErpInvoiceRow, ErpInvoiceRow.status)
            writebacks = grouped(s, ErpWritebackRow, ErpWritebackRow.status)
            events = grouped(s, ErpDocumentEventRow, ErpDocumentEventRow.status)
            issues = count(s, ErpSyncIssueRow, ErpSyncIssueRow.resolved_at.is_(None))
            setup = s.get(ErpAccountSetupRow, company_id)
            setup_view = AccountSetupView.of(setup) if setup is not None else None
        return SyncStatus(connection=conn, cursors=cursors, counts=counts, invoices_by_status=invoices,
                          writebacks_by_status=writebacks, document_events_by_status=events, open_issues=issues,
                          account_setup=setup_view)


def _stamp(record: Any) -> datetime | None:
    return getattr(record, "last_modified", None) or getattr(record, "occurred_at", None)


def _invoice_view(row: ErpInvoiceRow, lines: int) -> InvoiceView:
    from payweave.hooks.money import from_minor_units

    def m(v: int) -> Any:
        return from_minor_units(v, row.currency)

    return InvoiceView(
        invoice_id=row.invoice_id, number=row.number, customer_id=row.customer_id, currency=row.currency,
        status=row.status, erp_status=row.erp_status, origin=row.origin, invoice_date=row.invoice_date,
        due_date=row.due_date, total=m(row.total_incl_minor), remaining=m(row.remaining_minor), open=m(row.open_minor),
        settled=m(row.settled_minor), paid_via_payweave=row.paid_via_payweave,
        ignored_erp_changes=row.ignored_erp_changes, archived=row.archived, lines=lines, pdf_sha256=row.pdf_sha256,
    )


__all__ = ["ENTITY_ORDER", "ErpSyncService"]

"""The sync runner with an in-process ERP plugin registered like any other: pages are pulled
one at a time and each commits (with its cursor) in order, the next page being read while the
previous one's COMMIT runs on the helper thread and never later than that; a failed COMMIT fails
the run and the next run resumes at the last committed cursor; no more than one page is alive,
the company's lease makes runs exclusive and fences every commit; the migrations have one head
and match the models; ERP jobs merge and run."""
from __future__ import annotations

import weakref
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.autogenerate import compare_metadata
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError

from payweave.core.jobs.clock import ManualClock
from payweave.core.jobs.queue import JobQueue
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.core.store.db import MIGRATIONS
from payweave.core.store.models import Base, JobRow
from payweave.core.sync import ErpSyncService, SyncBusy, SyncSettings, enqueue_erp_job, handle_erp_job
from payweave.core.sync.errors import LeaseLost
from payweave.core.sync.models import ErpConnectionRow, ErpInvoiceRow, ErpSyncCursorRow
from payweave.hooks import hookimpl
from payweave.hooks.errors import NotSupported
from payweave.hooks.models import ErpInvoice, PluginInfo, PluginKind, SyncCursor, SyncEntity, SyncPage

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
PER_PAGE = 5
CID = "co"  # the ERP company id, lower-cased, is the default company key


class TrackedInvoice(ErpInvoice):
    """An ErpInvoice that can be weakly referenced, to count how many are alive."""


ALIVE: weakref.WeakSet[TrackedInvoice] = weakref.WeakSet()


class FakeErp:
    """An ERP with ``pages`` pages of invoices changed in the last 12 months and nothing else.
    ``on_page(k)`` runs just before page ``k`` (0-based) is produced."""

    def __init__(self, pages: int, on_page=None) -> None:
        self.pages = pages
        self.on_page = on_page or (lambda k: None)
        self.produced = 0

    @hookimpl
    def payweave_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="fake_erp", kind=PluginKind.ERP, title="Fake ERP")

    @hookimpl
    def erp_read_changes(self, account, entity, cursor: SyncCursor, page_size) -> Iterator[SyncPage]:
        if entity is not SyncEntity.INVOICES or cursor.since is None or cursor.until is not None:
            return iter([SyncPage(entity=entity, records=(), next_cursor=None)])
        if cursor.since > T0 - timedelta(days=30):  # the delta after the initial sync: nothing new
            return iter([SyncPage(entity=entity, records=(), next_cursor=None)])
        start = int(cursor.page_token[1:]) if cursor.page_token else 0
        return self._pages(entity, cursor, start)

    def _pages(self, entity, cursor, start) -> Iterator[SyncPage]:
        for k in range(start, self.pages):
            self.on_page(k)
            self.produced += 1
            records = tuple(TrackedInvoice(
                invoice_id=f"inv-{k}-{i}", number=f"FAKE-{k:03d}-{i}", customer_id="c-1", invoice_date=date(2026, 4, 1),
                currency="USD", status="Open", total_excluding_tax="10.00", total_tax="0", total_including_tax="10.00",
                remaining_amount="10.00", last_modified=T0 - timedelta(days=20, minutes=self.pages - k),
            ) for i in range(PER_PAGE))
            ALIVE.update(records)
            last = k == self.pages - 1
            yield SyncPage(entity=entity, records=records, high_water=records[-1].last_modified,
                           next_cursor=None if last else SyncCursor(since=cursor.since, page_token=f"p{k + 1}"))

    @hookimpl
    def erp_read_document(self, account, document_type, document_id):
        return None

    @hookimpl
    def erp_read_invoice_pdf(self, account, invoice_id):
        raise NotSupported("no PDFs here")

    @hookimpl
    def erp_list_ledger_accounts(self, account):
        return []

    @hookimpl
    def erp_record_payment(self, account, request):
        raise NotSupported("read only")

    @hookimpl
    def erp_record_deposit(self, account, request):
        raise NotSupported("read only")


def _service(store: Store, fake: FakeErp, clock: ManualClock | None = None) -> ErpSyncService:
    manager = PluginManager(PayweaveSettings(plugins=""))
    record = manager.register(fake, name="fake_erp")
    assert record.status == "active", record.error
    return ErpSyncService(store, manager, settings=SyncSettings(page_size=PER_PAGE), clock=clock or ManualClock(T0))


def _stored(store: Store) -> int:
    with store.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(ErpInvoiceRow)) or 0)


def _live_fake_invoices() -> int:
    return len(ALIVE)  # CPython frees an object when its last reference goes; no collection needed


def test_pages_are_committed_one_by_one_and_never_held_together(store):
    observations: list[tuple[int, int, int]] = []

    def on_page(k: int) -> None:
        observations.append((k, _stored(store), _live_fake_invoices()))

    service = _service(store, FakeErp(pages=12, on_page=on_page))
    service.connect(plugin="fake_erp", erp_company_id=CID)

    assert _stored(store) == 12 * PER_PAGE
    for k, stored, live in observations:
        # page k is read while page k - 1 may still be committing, never before page k - 2 committed
        assert stored in {max(0, k - 1) * PER_PAGE, k * PER_PAGE}, f"page {k} was read with {stored} stored"
        assert live <= PER_PAGE, f"{live} invoices alive while page {k} is produced"


def _on_sync_commits(store: Store, fn) -> None:
    """Call ``fn()`` inside every COMMIT the sync's helper thread makes (before the database's)."""

    @event.listens_for(store.engine, "commit")
    def _commit(_conn) -> None:
        if threading.current_thread().name.startswith("payweave-sync-commit"):
            fn()


def _committed_rows(store: Store) -> int:
    """Invoices committed, read without waiting for a writer (SQLite: a plain reader of the WAL,
    not the store's BEGIN IMMEDIATE, which would wait for the COMMIT in flight)."""
    if store.is_postgres:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ErpInvoiceRow)).scalar_one())
    reader = sqlite3.connect(store.url.database)
    try:
        return int(reader.execute("SELECT count(*) FROM erp_invoices").fetchone()[0])
    finally:
        reader.close()


def test_the_next_page_is_read_while_the_previous_page_commits_and_they_commit_in_order(store):
    pages = 6
    committing, release = threading.Event(), threading.Event()
    armed = {"on": False}  # the invoice pages' COMMITs only (other entities have empty pages)
    seen: list[tuple[int, bool, int]] = []

    def slow_commit() -> None:  # a page's COMMIT lasts until the next page is being read
        if armed["on"]:
            committing.set()
            release.wait(5)
            release.clear()
            committing.clear()

    def on_page(k: int) -> None:
        in_flight = committing.wait(2) if k else committing.is_set()
        seen.append((k, in_flight, _committed_rows(store)))
        armed["on"] = k < pages - 1
        if k:
            release.set()

    _on_sync_commits(store, slow_commit)
    service = _service(store, FakeErp(pages=pages, on_page=on_page))
    service.connect(plugin="fake_erp", erp_company_id=CID)

    assert _stored(store) == pages * PER_PAGE
    # from the second page on, each page was read while the previous page's COMMIT was running,
    # and exactly the pages before that one had committed: one at a time, in order
    assert seen == [(k, k > 0, max(0, k - 1) * PER_PAGE) for k in range(pages)]


def test_a_failed_commit_fails_the_run_and_the_next_run_resumes_after_the_last_committed_page(store):
    commits = {"n": 0}

    def refuse_page_3() -> None:
        commits["n"] += 1
        if commits["n"] == 5:  # customers' (empty) page, invoice pages 0, 1, 2, then page 3's COMMIT fails
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    _on_sync_commits(store, refuse_page_3)
    fake = FakeErp(pages=8)
    service = _service(store, fake)
    with pytest.raises(OperationalError, match="disk I/O error"):
        service.connect(plugin="fake_erp", erp_company_id=CID)
    with store.transaction() as s:
        cur = s.get(ErpSyncCursorRow, (CID, "invoices", "recent"))
        assert (cur.page_token, cur.pages) == ("p3", 3)
        assert s.get(ErpConnectionRow, CID).lease_owner is None
    assert _stored(store) == 3 * PER_PAGE
    assert fake.produced <= 5  # page 4 at most was read, not stored

    fake.produced = 0
    service.run_sync(CID)
    assert fake.produced == 5  # pages 3..7
    assert _stored(store) == 8 * PER_PAGE
    assert service.connection(CID).status == "connected"


def test_a_run_resumes_from_the_committed_cursor(store):
    def boom(k: int) -> None:
        if k == 4:
            raise KeyboardInterrupt  # the process is stopped while page 4 is fetched

    fake = FakeErp(pages=9, on_page=boom)
    service = _service(store, fake)
    with pytest.raises(KeyboardInterrupt):
        service.connect(plugin="fake_erp", erp_company_id=CID)
    with store.transaction() as s:
        cur = s.get(ErpSyncCursorRow, (CID, "invoices", "recent"))
        assert (cur.page_token, cur.pages, cur.state) == ("p4", 4, "running")
        conn = s.get(ErpConnectionRow, CID)
        assert (conn.status, conn.lease_owner, conn.last_sync_outcome) == ("pending", None, "retry")
    assert _stored(store) == 4 * PER_PAGE

    fake.on_page = lambda k: None
    fake.produced = 0
    service.run_sync(CID)
    assert fake.produced == 5  # pages 4..8, nothing read twice
    assert _stored(store) == 9 * PER_PAGE
    assert service.connection(CID).status == "connected"


def test_one_run_per_company_and_a_dead_runner_is_taken_over(store):
    service = _service(store, FakeErp(pages=1))
    service.connect(plugin="fake_erp", erp_company_id=CID, run_initial=False)
    later = T0 + timedelta(minutes=10)
    with store.transaction() as s:
        s.execute(update(ErpConnectionRow).values(lease_owner="other-host:4242:abcd", lease_expires_at=later))
    with pytest.raises(SyncBusy):
        service.run_sync(CID)

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with store.transaction() as s:
        s.execute(update(ErpConnectionRow).values(lease_owner=f"{socket.gethostname()}:{gone.pid}:dead",
                                                  lease_expires_at=later))
    report = service.run_sync(CID)
    assert report.status == "connected"
    assert service.connection(CID).status == "connected"


def test_a_run_that_lost_its_lease_writes_nothing_more(store):
    service: ErpSyncService

    def takeover(k: int) -> None:
        if k == 3:  # another runner took the company over (our lease had expired)
            with store.transaction() as s:
                s.execute(update(ErpConnectionRow).values(lease_owner="other-host:1:new"))

    service = _service(store, FakeErp(pages=6, on_page=takeover))
    with pytest.raises(LeaseLost):
        service.connect(plugin="fake_erp", erp_company_id=CID)
    assert _stored(store) == 3 * PER_PAGE
    with store.transaction() as s:
        assert s.get(ErpSyncCursorRow, (CID, "invoices", "recent")).page_token == "p3"
        assert s.get(ErpConnectionRow, CID).lease_owner == "other-host:1:new"


def test_erp_jobs_merge_and_a_worker_runs_the_initial_sync(store):
    clock = ManualClock(T0)
    service = _service(store, FakeErp(pages=2), clock)
    service.queue = JobQueue(store, clock=clock)
    service.connect(plugin="fake_erp", erp_company_id=CID, run_initial=False)  # Pending, a job for a worker
    with store.transaction() as s:
        [queued] = service.queue.list(company_id=CID, status="pending")
        assert (queued.payload["action"], queued.payload["entities"], queued.due_at) == ("sync", None, T0)
        a = enqueue_erp_job(service.queue, s, company_id=CID, action="sync", entities=["invoices"],
                            due_at=T0 + timedelta(hours=1))
        assert a.id == queued.id and a.payload["entities"] is None and a.due_at == T0  # merged, earliest wins
    with store.transaction() as s:
        s.execute(update(JobRow).values(payload={"action": "sync", "entities": ["invoices"]},
                                        due_at=T0 + timedelta(hours=1)))
    with store.transaction() as s:
        b = enqueue_erp_job(service.queue, s, company_id=CID, action="sync", entities=["customers"])
        assert b.payload["entities"] == ["customers", "invoices"]
        assert b.due_at == T0  # a notification does not wait for the next poll

    [job] = service.queue.claim("w1")
    result = handle_erp_job(service, job)
    assert result["status"] == "connected"
    service.queue.complete(job, result)
    # the fallback poll was scheduled for later
    [next_poll] = service.queue.list(company_id=CID, status="pending")
    assert next_poll.payload["action"] == "sync"
    assert next_poll.due_at == T0 + timedelta(seconds=service.settings.poll_interval_seconds)


def test_migrations_have_one_head_and_match_the_sync_models(sqlite_store):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, heads
    import payweave.core.sync.models  # noqa: F401  (the tables are on Base)

    with sqlite_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if "erp_" in repr(d)]
    assert ours == [], ours
    assert Path(MIGRATIONS, "versions", "0100_erp_sync.py").is_file()

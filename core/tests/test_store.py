"""The store: migrations match the models, exact amounts and UTC times on both backends,
URL validation, and per-document serialization."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import StatementError

from payweave.core.errors import DocumentBusy
from payweave.core.store import Base, JobRow, Store
from payweave.hooks.errors import ConfigurationError


def _import_all_models() -> None:
    """Every ``models`` / ``*_models`` module of the core adds its tables to ``Base.metadata``
    (the store's own, the HTTP service's, the ERP sync's), so the check covers every migration."""
    import importlib
    import pkgutil

    import payweave.core as package

    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf == "models" or leaf.endswith("_models"):
            importlib.import_module(info.name)


def test_migrations_create_exactly_the_models(store):
    _import_all_models()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert {"transactions", "operations", "transaction_history", "jobs", "payment_methods", "documents",
            "processed_events", "document_locks", "alembic_version"} <= tables


def test_opening_again_is_a_no_op_upgrade(store):
    store.upgrade()
    with store.engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from payweave.core.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert set(heads) == set(ScriptDirectory.from_config(config).get_heads())
    assert len(heads) == 1


def test_datetimes_come_back_aware_utc_and_naive_ones_are_refused(store):
    berlin = timezone(timedelta(hours=1))
    when = datetime(2026, 3, 1, 10, 30, tzinfo=berlin)
    with store.transaction() as s:
        row = JobRow(company_id="C", kind="k", status="pending", due_at=when, payload={}, attempts=0, max_attempts=3,
                     created_at=when, updated_at=when)
        s.add(row)
        s.flush()
        job_id = row.id
    with store.transaction() as s:
        due = s.scalars(select(JobRow.due_at).where(JobRow.id == job_id)).one()
    assert due == when and due.tzinfo is not None and due.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive datetimes are not stored"), store.transaction() as s:
        s.add(JobRow(company_id="C", kind="k", status="pending", due_at=datetime(2026, 1, 1), payload={}, attempts=0,
                     max_attempts=3, created_at=datetime.now(UTC), updated_at=datetime.now(UTC)))


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite://", "mysql+pymysql://u@h/db"],
)
def test_unusable_database_urls_are_refused(url):
    with pytest.raises(ConfigurationError) as err:
        Store(url)
    assert "database_url" in str(err.value.details)


def test_one_operation_per_document_at_a_time(store):
    """While one request holds a document, a second waits; another document does not."""
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with store.serialized("CRONUS", "sales_order:1"):
            holding.set()
            time.sleep(0.3)
            order.append("first-done")

    def second() -> None:
        holding.wait()
        with store.serialized("CRONUS", "sales_order:1"):
            order.append("second-in")

    def other_document() -> None:
        holding.wait()
        with store.serialized("CRONUS", "sales_order:2"):
            order.append("other-in")

    threads = [threading.Thread(target=f) for f in (first, second, other_document)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order.index("first-done") < order.index("second-in")
    if store.is_postgres:  # row locks: other documents run in parallel
        assert order.index("other-in") < order.index("first-done")
    else:  # SQLite: a single writer
        assert order.index("other-in") > order.index("first-done")


def test_reentrant_in_one_thread(store):
    with store.serialized("CRONUS", "a"), store.serialized("CRONUS", "a"), store.serialized("CRONUS", "b"):
        pass


def test_a_lock_held_too_long_is_reported_not_waited_forever(store):
    impatient = Store(store.url.render_as_string(hide_password=False), migrate=False, lock_timeout=0.2)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with store.serialized("CRONUS", "sales_order:busy"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    try:
        with pytest.raises(DocumentBusy) as err, impatient.serialized("CRONUS", "sales_order:busy"):
            pass
        assert err.value.retryable
    finally:
        release.set()
        t.join()
        impatient.dispose()


def test_processes_starting_together_migrate_one_after_the_other(tmp_path):
    """Four processes open a fresh store at once (four `payweave worker`s on a new database)."""
    import os
    import subprocess
    import sys
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.schema import CreateSchema, DropSchema

    base = os.environ.get("PAYWEAVE_TEST_POSTGRES_URL")
    if base:
        schema = f"pw_mig_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.execute(CreateSchema(schema))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = "import sys; from payweave.core.store import Store; Store(sys.argv[1]).dispose()"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
        store = Store(url, migrate=False)
        with store.engine.connect() as conn:
            assert len(MigrationContext.configure(conn).get_current_heads()) == 1
        store.dispose()
    finally:
        if base:
            with admin.begin() as conn:
                conn.execute(DropSchema(schema, cascade=True))
            admin.dispose()

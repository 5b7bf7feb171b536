"""Stores for tests: SQLite files copied from a migrated template, and a PostgreSQL schema of
their own on the server named by ``PAYWEAVE_TEST_POSTGRES_URL`` (without it PostgreSQL tests
skip with :data:`SKIP_PG` as the visible reason)."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from payweave.core.store import Store

POSTGRES_ENV = "PAYWEAVE_TEST_POSTGRES_URL"
SKIP_PG = (
    f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/payweave_test); "
    "it is not set"
)


def migrated_sqlite_template(directory: Path) -> Path:
    """A migrated SQLite file to copy per test (migrating once per session is the slow part)."""
    path = directory / "payweave.db"
    Store(f"sqlite:///{path}").dispose()
    return path


def sqlite_store_from(template: Path, directory: Path) -> Store:
    path = directory / "payweave.db"
    shutil.copyfile(template, path)
    return Store(f"sqlite:///{path}")


@contextlib.contextmanager
def postgres_schema_url(prefix: str = "pw_test") -> Iterator[str | None]:
    """A migrated schema of its own (dropped afterwards) on the test server; None without one."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        yield None
        return
    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(CreateSchema(schema))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    Store(url).dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        admin.dispose()

"""The store: engine and session factory, migrations on startup, and per-document serialization.

* SQLite (the embedded default, a file) runs every transaction as ``BEGIN IMMEDIATE`` in WAL
  mode with a busy timeout, and serializes engine operations with a single writer lock: a
  process-wide re-entrant lock plus an ``flock`` on ``<database>.lock``, so several processes
  on one file still take turns.
* PostgreSQL (psycopg 3) serializes per document: the operation holds ``SELECT ... FOR UPDATE``
  on the document's row in ``document_locks`` on its own connection for its whole length,
  while intent and outcome commit on a second connection; other documents run in parallel.

Migrations (Alembic, ``store/migrations``) are applied with ``upgrade head`` when a
:class:`Store` is opened (``migrate=False`` skips it).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from payweave.core.errors import DocumentBusy
from payweave.hooks.errors import ConfigurationError

from .models import Base, DocumentLockRow

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock held while migrating ("payweave" in ASCII).
MIGRATION_LOCK_ID = 0x7061797765617665

# Keys this thread/task holds already (re-entrant locking inside one engine call).
_held: ContextVar[frozenset[tuple[str, str, str]]] = ContextVar("payweave_held_locks", default=frozenset())

_sqlite_locks_guard = threading.Lock()


class _SqliteWriterLock:
    """Process-wide re-entrant lock + flock on a lock file next to the database."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        if not self.rlock.acquire(timeout=timeout):
            raise DocumentBusy(
                "Another payment operation is still running; please try again in a moment.",
                details={"waited_seconds": timeout},
            )
        try:
            if self._depth == 0:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
        finally:
            self.rlock.release()


_writer_locks: dict[str, _SqliteWriterLock] = {}


class Store:
    """Database access for the engine and the job queue."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        echo: bool = False,
        lock_timeout: float = 60.0,
        pool_size: int = 10,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in {"sqlite", "postgresql"}:
            raise ConfigurationError(
                f"PAYWEAVE_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, not {self.dialect!r}.",
                details={"setting": "database_url"},
            )
        self.lock_timeout = lock_timeout
        if self.dialect == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                raise ConfigurationError(
                    "The SQLite store must be a file (sqlite:///path/payweave.db); in-memory databases "
                    "cannot be shared by the engine and its workers.",
                    details={"setting": "database_url"},
                )
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                # A small pool keeps connections open between transactions: with a connection per
                # transaction, SQLite checkpoints and deletes the WAL each time the last one closes
                # (most of a capture's latency). Connections are reset (rolled back) on return.
                self.url, echo=echo, poolclass=QueuePool, pool_size=4, max_overflow=16, pool_recycle=3600,
                connect_args={"timeout": 60, "check_same_thread": False},
            )
            os.register_at_fork(after_in_child=lambda: self.engine.dispose(close=False))
            _configure_sqlite(self.engine)
            lock_path = str(Path(database).resolve()) + ".lock"
            with _sqlite_locks_guard:
                writer = _writer_locks.get(lock_path)
                if writer is None:
                    writer = _writer_locks[lock_path] = _SqliteWriterLock(lock_path)
            self._writer = writer
        else:
            if self.url.drivername == "postgresql":
                self.url = self.url.set(drivername="postgresql+psycopg")
            # no pre-ping round trip per checkout: a connection broken by a server restart is
            # invalidated on first use and the (retryable) error surfaces once
            self.engine = create_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=2 * pool_size, pool_recycle=1800
            )
            _configure_postgres(self.engine, lock_timeout)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision`` (``head`` on startup)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._migration_lock(), self.engine.begin() as connection:
            if self.dialect == "postgresql":  # several processes starting at once migrate one after the other
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            with self._writer.hold(self.lock_timeout):
                yield
        else:
            yield

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one database transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def session(self) -> Session:
        return self.sessions()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """One pooled connection held for several transactions (see :meth:`transaction_on`), so an
        operation's intent and outcome skip a pool checkout and a session each. Hold it only
        while no other transaction of this thread needs the database (on SQLite it is a second
        writer), and never across threads."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction_on(self, conn: Connection) -> Iterator[Session]:
        """A session in one database transaction on ``conn`` (from :meth:`connect`): committed on
        success, rolled back on error. :func:`connection_of` the session is ``conn``.

        Roll back by leaving the block with an exception: the session joins ``conn``'s
        transaction only once it uses the connection, so ``session.rollback()`` alone may leave
        the transaction (and on SQLite the writer lock) open."""
        with conn.begin():
            session = self.sessions(bind=conn, join_transaction_mode="rollback_only")
            try:
                yield session
                session.flush()  # conn.begin() commits the database transaction (the session never does)
            finally:
                session.close()

    # ------------------------------------------------------------------ serialization
    @contextlib.contextmanager
    def serialized(self, company_id: str, key: str) -> Iterator[None]:
        """Run the block as the only operation on document ``key`` of ``company_id``.

        Re-entrant in the same thread/task. On SQLite the single writer lock; on PostgreSQL a
        row lock held on a dedicated connection until the block ends.
        """
        token_key = (str(self.url), company_id, key)
        held = _held.get()
        if token_key in held or (self.dialect == "sqlite" and any(h[0] == str(self.url) for h in held)):
            yield
            return
        token = _held.set(held | {token_key})
        try:
            if self.dialect == "sqlite":
                with self._writer.hold(self.lock_timeout):
                    yield
            else:
                with self._pg_row_lock(company_id, key):
                    yield
        finally:
            _held.reset(token)

    @contextlib.contextmanager
    def _pg_row_lock(self, company_id: str, key: str) -> Iterator[None]:
        lock = (
            select(DocumentLockRow.lock_key)
            .where(DocumentLockRow.company_id == company_id, DocumentLockRow.lock_key == key)
            .with_for_update()
        )
        with self.sessions() as session:
            session.begin()
            try:
                try:
                    if session.execute(lock).first() is None:
                        # first operation on this document: create its lock row (maybe concurrently), then lock it
                        session.rollback()
                        with session.begin():
                            session.execute(
                                pg_insert(DocumentLockRow)
                                .values(company_id=company_id, lock_key=key)
                                .on_conflict_do_nothing(index_elements=["company_id", "lock_key"])
                            )
                        session.begin()
                        session.execute(lock).one()
                except OperationalError as exc:  # lock_timeout (set on every connection) ran out
                    raise DocumentBusy(
                        "Another request for this document is still running; please try again in a moment.",
                        details={"document": key, "waited_seconds": self.lock_timeout},
                    ) from exc
                yield
            finally:
                session.rollback()

    # ------------------------------------------------------------------ test helpers
    def delete_all(self) -> None:
        """Empty every table (tests)."""
        from sqlalchemy import delete

        with self.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(delete(table))


def connection_of(session: Session) -> Connection:
    """The connection of ``session``'s database transaction (the one it is bound to, if any)."""
    bind = session.bind
    return bind if isinstance(bind, Connection) else session.connection()


def _configure_postgres(engine: Engine, lock_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # a lock wait (document lock, row lock) gives up after lock_timeout instead of hanging
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout * 1000)}ms",))
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE: take the write lock at the start, so two writers never deadlock on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


__all__ = ["MIGRATIONS", "Store", "connection_of"]

"""One page's COMMIT on a thread of its own while the sync reads the next page.

A page of the ERP sync is parsed and mapped (the plugin's generator: pure CPU, no database),
then applied with its cursor in one database transaction. The transaction's last step, the
COMMIT, is I/O: SQLite writes the WAL and, every 1,000 pages, checkpoints it into the database
file and syncs it; PostgreSQL makes a round trip and flushes its log. :class:`PageCommits` runs
that COMMIT on a helper thread, and the runner parses the next page meanwhile (the driver
releases the GIL while it commits).

What does not change (``docs/erp-sync.md``, "Cursors, crash safety"):

* a page and its cursor still commit in one transaction;
* pages commit one at a time and in order: a page's transaction begins only after the previous
  page's COMMIT has returned (:meth:`PageCommits.transaction` waits for it first), and a stream
  ends (or fails) only after its last COMMIT has returned;
* a crash loses at most the page being committed and the one being read; the next run resumes
  at the stored cursor, and upserts make the repetition harmless;
* a failed COMMIT fails the run with its own error, raised in the runner's thread when it next
  waits (before the next page's transaction, or at the end of the stream).

A page's progress (``on_committed``) is reported only after its COMMIT returned.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from payweave.core.logging import get_logger

if TYPE_CHECKING:
    from payweave.core.store import Store

log = get_logger(component="erp-sync")


class PageCommits:
    """At most one page transaction committing in the background; one instance per sync run,
    used from the run's thread only. :meth:`close` when the run ends."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._on_committed: Callable[[], None] | None = None

    @contextlib.contextmanager
    def transaction(self, store: Store, on_committed: Callable[[], None] | None = None) -> Iterator[Session]:
        """A session in one database transaction, begun after the previous page's COMMIT has
        returned. Leaving the block normally hands the COMMIT to the helper thread (then
        ``on_committed`` runs in this thread once it has returned); leaving it with an exception
        rolls the transaction back here."""
        self.wait()
        session = store.sessions()
        try:
            session.begin()
            yield session
            session.flush()
        except BaseException:
            try:
                session.rollback()
            finally:
                session.close()
            raise
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payweave-sync-commit")
        self._pending = self._executor.submit(_commit, session)
        self._on_committed = on_committed

    def wait(self) -> None:
        """Wait for the pending COMMIT, if any; raise its error, or report its progress."""
        pending, callback = self._pending, self._on_committed
        if pending is None:
            return
        self._pending = self._on_committed = None
        pending.result()
        if callback is not None:
            callback()

    def settle(self) -> None:
        """Wait for the pending COMMIT while another error ends the stream: that error wins; a
        failed COMMIT is logged (its page is read again by the next run)."""
        try:
            self.wait()
        except BaseException as exc:  # noqa: BLE001 - the caller's exception is the one raised
            log.warning("erp.sync.page_commit_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """Around reading a stream: on every way out, the stream's last COMMIT has returned
        (:meth:`wait` when the block succeeded, :meth:`settle` when it raised)."""
        try:
            yield
        except BaseException:
            self.settle()
            raise
        self.wait()

    def close(self) -> None:
        self.settle()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _commit(session: Session) -> None:
    connection = session.connection()
    try:
        session.commit()
    except BaseException:
        # the transaction's state is unknown after a failed COMMIT: the connection is closed
        # (the database rolls back whatever is left) and never goes back to the pool
        connection.invalidate()
        raise
    finally:
        session.close()

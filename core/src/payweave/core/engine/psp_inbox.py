"""The webhook inbox: record verified PSP events durably, in groups, answer the PSP, and apply
them after the answer.

What acknowledging a webhook needs is only that its events are committed, each once: the PSP
redelivers anything not answered 200, and applying is payweave's own business afterwards
(:mod:`.psp_events`). So the HTTP service hands verified events to :meth:`PspInbox.receive`,
which

* commits them in groups (**group commit**): every delivery waiting at that moment goes into one
  transaction (a Core insert that skips keys stored before), and only after the commit is each
  waiting request released with its outcome (``received``, or ``duplicate``); a request is never
  answered before its events are committed. While one group commits, the next one gathers.
  On PostgreSQL one writer thread commits the groups. On SQLite the event loop gathers the
  deliveries of one pass and commits them itself right after (``_flush``): a commit there takes
  a fraction of a millisecond, and the two thread hops per group (to the writer and back, each
  waiting for the GIL behind the request path) cost more than it. The loop commits only when
  that cannot wait, though: when the applier is between events and SQLite's write lock is free
  at that instant (on a connection of its own with busy timeout 0, which leaves WAL checkpoints
  to the other connections' commits); otherwise the group goes to the writer thread, which waits
  for its turn, so another writer (a payment operation, another process) delays the webhooks
  but never stalls the event loop. If a group's transaction fails, each delivery is tried on its
  own, so one bad event (a field the database refuses) fails only its own request (503, the PSP
  redelivers);
* wakes the :class:`EventApplier`, a thread that applies received events oldest first
  (:meth:`PspEvents.apply_pending`), each under its document lock. It starts by applying what an
  earlier process recorded and never applied (a crash between answer and apply), and looks
  again every few seconds for events another process recorded.

Recording comes first: when deliveries came in while the applier applied an event (one is
waiting, or one arrived in the last 50 ms: a steady stream leaves the inbox empty at most
instants), it steps back so as to use at most ``burst_share`` (a twentieth) of the time for the
first ``burst_seconds`` (3 s) of continuous pressure, and at most ``share`` (a fifth) after that:
a burst is acknowledged at nearly full speed (what the PSP times out on) and applied during and
right after it, and under sustained load applying still keeps a fifth of the time, so it never
falls behind for ever; without pressure it runs flat out. On SQLite (one writer for the whole
database) the writer and the applier also take turns on an in-process lock rather than meeting
in SQLite's busy handler, which sleeps milliseconds at a time. The applier takes the store's
writer lock before that turn, so the recording writer never waits for a payment operation's PSP
call, and it holds both only around its database work (:attr:`PspEvents.turn`), never while it
reads a PSP's books to confirm an event. When the turn or SQLite's write lock is taken, the
event loop tries its group again a millisecond later, for up to 50 ms, before the writer thread
takes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from payweave.core.errors import CoreError
from payweave.core.logging import get_logger
from payweave.core.metrics import WEBHOOK_EVENTS, labelled
from payweave.hooks.models import PspEvent

from .psp_events import DUPLICATE_NOTE, EventOutcome, EventStatus, PspEvents

Key = tuple[str, str, str]

#: SQLite: how long the event loop keeps trying to commit a group itself (every
#: :data:`LOOP_RETRY_SECONDS`) while the applier has its turn or another connection writes,
#: before it hands the group to the writer thread
LOOP_RETRY_WINDOW = 0.05
LOOP_RETRY_SECONDS = 0.001
#: deliveries are "pressing" while one arrived less than this long ago: a steady stream of
#: webhooks leaves the inbox empty at most instants (each group commits within a millisecond),
#: so "something is waiting right now" alone missed most of a burst
PRESSURE_SECONDS = 0.05
RECEIVED_NOTE = "Recorded; it is applied to its payment right after this answer, in the order received."


class WebhookNotRecorded(CoreError):
    """The events could not be committed: the PSP must deliver the webhook again."""

    code = "webhook_not_recorded"
    http_status = 503
    retryable = True


class _Stopping(BaseException):
    """The applier is stopping: out of apply_pending at once (not an error of one event)."""


@dataclass
class _Delivery:
    rows: list[dict[str, Any]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[dict[Key, int]]
    keys: list[Key] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


class EventApplier:
    """A daemon thread applying recorded events after the answer (see the module docstring)."""

    def __init__(self, events: PspEvents, inbox: PspInbox | None = None, *, interval: float = 5.0,
                 share: float = 0.2, burst_share: float = 0.05, burst_seconds: float = 3.0) -> None:
        self.events = events
        self.inbox = inbox
        self.interval = interval
        self.share = share
        self.burst_share = burst_share
        self.burst_seconds = burst_seconds
        self._pressed_since: float | None = None  # when the current run of pressure began
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._poll = False
        self.log = get_logger(component="psp_applier")

    def start(self, *, poll: bool = True) -> EventApplier:
        """Start the thread: it applies what is waiting, then whatever the inbox commits, and
        with ``poll`` also looks for events recorded elsewhere every ``interval`` seconds (the
        service's applier; one started by the first delivery only follows its inbox)."""
        with self._guard:
            if poll:
                self._poll = True
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="payweave-psp-applier", daemon=True)
                self._thread.start()
        return self

    def wake(self) -> None:
        """New events are committed: apply them (starts the thread on first use)."""
        if self._thread is None:
            self.start(poll=False)
        self._wake.set()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                applied = self.events.apply_pending(pace=self.pace)
                if applied:
                    self.log.debug("webhook.applied", events=applied)
                backoff = 0.0
            except _Stopping:
                return
            except Exception as exc:  # the store is away: try again a little later
                backoff = min(max(backoff * 2, 0.1), self.interval)
                self.log.error("webhook.applier_failed", error_type=type(exc).__name__)
                self._stop.wait(backoff)
                continue
            self._wake.wait(self.interval if self._poll else None)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Around the database work of applying one event (:attr:`PspEvents.turn`; not around
        reading the PSP's books, which may take as long as the PSP does): on SQLite the store's
        writer lock, then the inbox's turn."""
        store = self.events.store
        if self.inbox is None or store.is_postgres:
            yield
            return
        with store.serialized("_psp", "applier"), self.inbox.turn():
            yield

    @contextlib.contextmanager
    def pace(self) -> Iterator[None]:
        """Around each event: when deliveries came in meanwhile, step back so as to use at most
        ``share`` of the time (recording first; applying still moves on)."""
        if self._stop.is_set() and threading.current_thread() is self._thread:
            raise _Stopping  # unwinds apply_pending now; what is left stays received for the next start
        if self.inbox is None:
            yield
            return
        started = time.monotonic()
        yield
        if not self.inbox.pressed():
            self._pressed_since = None
            return
        # deliveries queued up meanwhile: step back, recording first (more so early in a burst)
        now = time.monotonic()
        if self._pressed_since is None:
            self._pressed_since = started
        share = self.burst_share if now - self._pressed_since < self.burst_seconds else self.share
        self._stop.wait((now - started) * (1 - share) / share)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


class PspInbox:
    """Group commit of verified webhook events, then the applier (see the module docstring)."""

    def __init__(self, events: PspEvents, *, max_rows: int = 1000, applier: EventApplier | None = None) -> None:
        self.events = events
        self.store = events.store
        self.max_rows = max_rows
        self.applier = applier or EventApplier(events, self)
        events.pace = self.applier.pace  # any sweep of this process (maintenance, recovery) yields the same way
        events.turn = self.applier.turn
        self._cond = threading.Condition()
        self._waiting: list[_Delivery] = []
        self._committing = False
        self._writer_idle = False
        self._closed = False
        self._last_delivery = -PRESSURE_SECONDS  # time.monotonic() of the latest delivery
        #: deliveries the writer committed, in how many groups (one transaction each), the largest group
        self.stats = {"deliveries": 0, "groups": 0, "largest_group": 0}
        # SQLite: the writer and the applier take turns here (see the module docstring)
        self._turn = threading.Lock() if not self.store.is_postgres else None
        self._writer: threading.Thread | None = None
        #: SQLite: deliveries each event loop gathered for its next flush, and the loop's connection
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        self._connections: dict[asyncio.AbstractEventLoop, Connection] = {}
        self.log = get_logger(component="psp_inbox")

    def start(self) -> PspInbox:
        """Start the applier now (it applies what a previous run left unapplied first)."""
        self.applier.start()
        return self

    # ------------------------------------------------------------------ the request path
    async def receive(self, psp: str, account: str, events: list[PspEvent], received_at: datetime) -> list[EventOutcome]:
        """Record verified events; return once they are committed: ``received`` for each event
        new here, ``duplicate`` for one stored before. Raises :class:`WebhookNotRecorded`."""
        rows = [PspEvents.row_values(psp, account, event, received_at) for event in events]
        inserted = await self.record(rows) if rows else {}
        outcomes = []
        for event in events:
            new = (psp, account, event.event_id) in inserted
            status = EventStatus.RECEIVED if new else EventStatus.DUPLICATE
            labelled(WEBHOOK_EVENTS, psp, status).inc()
            outcomes.append(EventOutcome(event_id=event.event_id, type=event.type, status=status,
                                         message=RECEIVED_NOTE if new else DUPLICATE_NOTE))
        return outcomes

    async def record(self, rows: list[dict[str, Any]]) -> dict[Key, int]:
        """Commit ``rows`` (:meth:`PspEvents.row_values`) with whatever else is waiting; the ids of
        the rows this call inserted, by key (a key missing was stored before)."""
        loop = asyncio.get_running_loop()
        delivery = _Delivery(rows, loop, loop.create_future(), [(r["psp"], r["psp_account"], r["event_id"]) for r in rows])
        self._last_delivery = delivery.since
        if self._closed:
            raise WebhookNotRecorded("The service is shutting down; please deliver the webhook again.")
        if self._turn is not None:  # SQLite: gathered on this loop, committed by it when it may (see _flush)
            gathering = self._gathering.get(loop)
            if gathering is None:
                gathering = self._gathering[loop] = []
                loop.call_soon(self._flush, loop)
            gathering.append(delivery)
        else:
            self._hand_to_writer([delivery])
        return await delivery.future

    def _hand_to_writer(self, deliveries: list[_Delivery]) -> None:
        with self._cond:
            if self._closed:
                _resolve([(d.future, WebhookNotRecorded("The service is shutting down.")) for d in deliveries])
                return
            self._waiting.extend(deliveries)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="payweave-psp-inbox", daemon=True)
                self._writer.start()
            elif self._writer_idle:
                # wake the writer once per group, not per delivery: each wake-up is a thread switch
                # that the request path pays for (an applier waiting for a gap needs no wake-up)
                self._writer_idle = False
                self._cond.notify_all()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """SQLite, on the event loop: commit what this loop gathered since the last flush, in one
        transaction, and release the requests; no thread hop on the way in or out. Only when the
        commit cannot wait: the turn is free (the applier is between events) and SQLite's write
        lock is free right now (no waiting in its busy handler, which would stall every request
        of this loop). Otherwise, and when the commit fails, the writer thread takes the group
        (it waits for its turn, and tries each delivery on its own after a failure)."""
        group = self._gathering.pop(loop, [])
        if not group:
            return
        assert self._turn is not None
        if not self._turn.acquire(blocking=False):
            self._retry_or_hand_over(loop, group)
            return
        try:
            if self._closed:
                raise WebhookNotRecorded("The service is shutting down.")
            connection = self._loop_connection(loop)
            try:
                with connection.begin():
                    inserted = self.events.insert_received(connection, [row for d in group for row in d.rows])
            except Exception:
                self._connections.pop(loop, None)
                connection.close()  # a fresh one next time, whatever state this one was left in
                raise
        except OperationalError as exc:  # another connection holds SQLite's write lock right now
            if _busy(exc):
                self._retry_or_hand_over(loop, group)
            else:
                self._hand_to_writer(group)
            return
        except Exception:  # failing: the writer thread decides, as for any group
            self._hand_to_writer(group)
            return
        finally:
            self._turn.release()
        results = self._claim(group, inserted)
        self._committed(group, results)
        _resolve([(d.future, r) for d, r in results])

    def _retry_or_hand_over(self, loop: asyncio.AbstractEventLoop, group: list[_Delivery]) -> None:
        """The writer's turn or SQLite's write lock is taken (the applier is applying an event,
        which takes about a millisecond, or another connection writes): try again on this loop
        in :data:`LOOP_RETRY_SECONDS`, with whatever arrives meanwhile, for up to
        :data:`LOOP_RETRY_WINDOW`; then the writer thread takes the group. The loop serves other
        requests meanwhile, and the group skips the two thread hops (each waiting for the GIL
        behind the request path) that the writer thread costs it."""
        if self._closed or time.monotonic() - group[0].since >= LOOP_RETRY_WINDOW:
            self._hand_to_writer(group)
            return
        # nothing was gathered since _flush popped the group (same loop, no await in between):
        # the group is this loop's gathering again, and later deliveries join it
        self._gathering[loop] = group
        loop.call_later(LOOP_RETRY_SECONDS, self._flush, loop)

    def _loop_connection(self, loop: asyncio.AbstractEventLoop) -> Connection:
        """The connection ``loop`` commits on (SQLite; the caller holds the turn): its own, out of
        the pool for good, so its settings never reach another user. It does not wait for
        another writer (busy timeout 0: SQLite's busy handler would stall the loop) and leaves WAL
        checkpoints, which write and sync the database file, to the other connections' commits
        (the applier's)."""
        connection = self._connections.get(loop)
        if connection is None:
            for gone in [other for other in self._connections if other.is_closed()]:
                self._connections.pop(gone).close()
            connection = self.store.engine.connect()
            driver = connection.connection.driver_connection  # no statement yet, so no BEGIN yet
            connection.detach()  # closed with this Connection, never returned to the pool
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")
            self._connections[loop] = connection
        return connection

    def pressed(self) -> bool:
        """Whether deliveries are coming in: one is waiting to be committed or being committed
        right now, or one arrived in the last :data:`PRESSURE_SECONDS`."""
        return (bool(self._waiting) or self._committing or any(self._gathering.values())
                or time.monotonic() - self._last_delivery < PRESSURE_SECONDS)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """The writer's turn on SQLite (a no-op on PostgreSQL)."""
        if self._turn is None:
            yield
            return
        with self._turn:
            yield

    # ------------------------------------------------------------------ the writer
    def _take(self) -> list[_Delivery] | None:
        with self._cond:
            self._committing = False
            while not self._waiting and not self._closed:
                self._writer_idle = True
                self._cond.wait()
            self._writer_idle = False
            if not self._waiting:
                return None
            self._committing = True
            taken, rows = 0, 0
            for delivery in self._waiting:
                if taken and rows + len(delivery.rows) > self.max_rows:
                    break
                taken += 1
                rows += len(delivery.rows)
            group, self._waiting = self._waiting[:taken], self._waiting[taken:]
            return group

    def _write_loop(self) -> None:
        while (group := self._take()) is not None:
            results: list[tuple[_Delivery, dict[Key, int] | BaseException]]
            try:
                with self.turn():
                    results = self._commit(group)
                self._committed(group, results)
            except Exception as exc:  # never leave a request waiting, never let the writer die
                self.log.error("webhook.writer_failed", error_type=type(exc).__name__)
                results = [(delivery, exc) for delivery in group]
            self._release(results)

    def _committed(self, group: list[_Delivery], results: list[tuple[_Delivery, dict[Key, int] | BaseException]]) -> None:
        """Count a committed group and wake the applier when it inserted something."""
        self.stats["deliveries"] += len(group)
        self.stats["groups"] += 1
        self.stats["largest_group"] = max(self.stats["largest_group"], len(group))
        if any(isinstance(r, dict) and r for _, r in results):
            self.applier.wake()

    def _insert(self, deliveries: list[_Delivery]) -> dict[Key, int]:
        # a Core connection, no ORM session: the writer's own Python work is what recording costs
        with self.store.engine.begin() as connection:
            return self.events.insert_received(connection, [row for d in deliveries for row in d.rows])

    def _commit(self, group: list[_Delivery]) -> list[tuple[_Delivery, dict[Key, int] | BaseException]]:
        try:
            inserted = self._insert(group)
        except Exception as exc:
            if len(group) == 1:
                return [(group[0], exc)]
            self.log.warning("webhook.group_commit_failed", deliveries=len(group), error_type=type(exc).__name__)
            results: list[tuple[_Delivery, dict[Key, int] | BaseException]] = []
            for delivery in group:  # one at a time: only a delivery the database refuses fails
                try:
                    results.append((delivery, self._insert([delivery])))
                except Exception as one:
                    results.append((delivery, one))
            return results
        return self._claim(group, inserted)

    @staticmethod
    def _claim(group: list[_Delivery], inserted: dict[Key, int]) -> list[tuple[_Delivery, dict[Key, int] | BaseException]]:
        """Each delivery's share of what the group inserted: an event delivered twice in one
        group was inserted once, and the first delivery owns it."""
        claimed: set[Key] = set()
        out: list[tuple[_Delivery, dict[Key, int] | BaseException]] = []
        for delivery in group:
            mine = {k: inserted[k] for k in delivery.keys if k in inserted and k not in claimed}
            claimed.update(mine)
            out.append((delivery, mine))
        return out

    def _release(self, results: list[tuple[_Delivery, dict[Key, int] | BaseException]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[dict[Key, int]], Any]]] = defaultdict(list)
        for delivery, result in results:
            by_loop[delivery.loop].append((delivery.future, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed: nobody waits any more (the events are committed)
                pass

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, stop the writer and the applier."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(timeout)
        self.applier.stop(timeout)
        with self.turn():  # no loop is committing on its connection now
            while self._connections:
                self._connections.popitem()[1].close()


def _resolve(items: list[tuple[asyncio.Future[dict[Key, int]], Any]]) -> None:
    for future, result in items:
        if future.done():  # the request went away (the client hung up); its events are committed
            continue
        if isinstance(result, BaseException):
            labelled(WEBHOOK_EVENTS, "-", "not_recorded").inc()
            future.set_exception(WebhookNotRecorded(
                "The webhook's events could not be recorded; please deliver it again.",
                details={"error_type": type(result).__name__}))
        else:
            future.set_result(result)


def _busy(exc: OperationalError) -> bool:
    """SQLite's SQLITE_BUSY ("database is locked"): another connection holds the write lock."""
    return getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


__all__ = ["EventApplier", "PspInbox", "WebhookNotRecorded"]

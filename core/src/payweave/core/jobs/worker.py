"""Job workers: claim due jobs, run their handlers, record the outcome.

* :class:`Worker` is the loop itself; ``run_once`` claims one batch and runs it (tests drive it
  with a :class:`~payweave.core.jobs.clock.ManualClock` instead of sleeping).
* :class:`BackgroundWorker` runs a worker in a daemon thread: the in-process default of the
  embedded setup (``payweave serve`` / the demo start one).
* ``payweave worker`` runs a standalone worker process; on PostgreSQL any number of them share
  the queue (``FOR UPDATE SKIP LOCKED`` + leases).

On start a worker replays PSP operations left without outcome (a crash of the previous process)
and makes sure the reservation-renewal scan is queued.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError
from structlog.contextvars import bound_contextvars

from payweave.core.logging import get_logger
from payweave.hooks.errors import PayweaveError, TemporarilyUnavailable

from . import handlers as _builtin  # noqa: F401  (registers the built-in handlers)
from .handlers import JobContext, ensure_renewal_scan, handler_for
from .queue import ClaimedJob, JobQueue, JobStatus

if TYPE_CHECKING:
    from payweave.core.engine import PaymentEngine


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        engine: PaymentEngine,
        *,
        name: str | None = None,
        queue: JobQueue | None = None,
        batch_size: int | None = None,
        lease_seconds: float | None = None,
        poll_interval: float | None = None,
        recover_on_start: bool = True,
        renewal_scan: bool = True,
    ) -> None:
        self.engine = engine
        self.queue = queue or engine.jobs
        self.name = name or default_worker_name()
        settings = engine.settings.jobs
        self.batch_size = batch_size or settings.batch_size
        self.lease_seconds = lease_seconds or settings.lease_seconds
        self.poll_interval = poll_interval or settings.poll_interval
        self.recover_on_start = recover_on_start
        self.renewal_scan = renewal_scan
        self.processed = 0
        self._started = False
        self.log = get_logger(component="worker", worker=self.name)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Recover unfinished PSP operations and queue the renewal scan (once per worker)."""
        if self._started:
            return
        self._started = True
        if self.recover_on_start:
            try:
                recovered = self.engine.recover()
                if recovered:
                    self.log.info("worker.recovered", transactions=recovered)
            except PayweaveError as exc:  # the recover jobs will try again
                self.log.warning("worker.recover_failed", code=exc.code, error=exc.message)
        if self.renewal_scan:
            ensure_renewal_scan(self.engine)
        self.log.info("worker.started")

    def run_once(self) -> int:
        """Claim one batch of due jobs and run it; the number of jobs run."""
        self.start()
        jobs = self.queue.claim(self.name, limit=self.batch_size, lease_seconds=self.lease_seconds)
        claimed_at = time.monotonic()
        ran = 0
        for job in jobs:
            # renew the lease before starting a job once a third of it has gone by; a job whose lease
            # another worker took over meanwhile is left to that worker
            if time.monotonic() - claimed_at > self.lease_seconds / 3:
                if not self.queue.extend_lease(job, lease_seconds=self.lease_seconds):
                    self.log.warning("job.lease_lost", job=job.id)
                    continue
            self.execute(job)
            ran += 1
        self.processed += ran
        return ran

    def run_forever(self, stop: threading.Event) -> None:
        self.start()
        while not stop.is_set():
            try:
                ran = self.run_once()
            except (OperationalError, DBAPIError) as exc:
                self.log.error("worker.database_error", error=str(exc).splitlines()[0])
                ran = 0
                stop.wait(min(self.poll_interval * 10, 5.0))
            if ran == 0:
                stop.wait(self.poll_interval)

    def run_until_idle(self, *, idle_seconds: float = 2.0, max_seconds: float = 300.0) -> int:
        """Run until nothing was due for ``idle_seconds`` (wall time); the number of jobs run."""
        self.start()
        started = last_work = time.monotonic()
        total = 0
        while time.monotonic() - started < max_seconds:
            ran = self.run_once()
            total += ran
            now = time.monotonic()
            if ran:
                last_work = now
            elif now - last_work >= idle_seconds:
                break
            else:
                time.sleep(self.poll_interval)
        return total

    # ------------------------------------------------------------------ one job
    def execute(self, job: ClaimedJob) -> JobStatus:
        with bound_contextvars(job=job.id, job_kind=job.kind, company=job.company_id, worker=self.name):
            try:
                handler = handler_for(job.kind)
                result = handler(JobContext(self.engine, job)) or {}
            except PayweaveError as exc:
                retry_after = exc.retry_after.total_seconds() if isinstance(exc, TemporarilyUnavailable) and exc.retry_after else None
                status = self.queue.fail(job, code=exc.code, message=exc.message, retryable=exc.retryable, retry_after=retry_after)
                self.log.warning("job.failed", code=exc.code, error=exc.message, retryable=exc.retryable, status=status.value,
                                 attempt=job.attempts)
                return status
            except (OperationalError, DBAPIError) as exc:
                status = self.queue.fail(job, code="database_unavailable", message=str(exc).splitlines()[0], retryable=True)
                self.log.warning("job.database_error", status=status.value)
                return status
            except Exception as exc:  # a bug in a handler: park the job with the error, keep the worker alive
                status = self.queue.fail(job, code="job_crashed", message=f"{type(exc).__name__}: {exc}", retryable=False)
                self.log.exception("job.crashed")
                return status
            if self.queue.complete(job, _jsonable(result)):
                self.log.info("job.done", result=result)
                return JobStatus.DONE
            self.log.warning("job.lease_lost_before_completion")
            return JobStatus.RUNNING


def _jsonable(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {"result": str(result)}
    return {str(k): (v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v)) for k, v in result.items()}


class BackgroundWorker:
    """A :class:`Worker` in a daemon thread (the embedded default)."""

    def __init__(self, engine: PaymentEngine, **worker_options: Any) -> None:
        self.worker = Worker(engine, **worker_options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BackgroundWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self.worker.run_forever, args=(self._stop,), name="payweave-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

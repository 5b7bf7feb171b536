"""The durable job queue: jobs live in the store beside the payment state and are written in the
same database transaction as the state change that caused them (no dual writes).

Claiming: due jobs (and running jobs whose lease expired: their worker died) are claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers share the queue;
on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction (one writer). A claim sets a lease
(owner + expiry) and counts the attempt. Completion is fenced by the lease owner.

Failures: retryable errors back off with :meth:`payweave.hooks.retry.RetryPolicy.delay`
(exponential, full jitter) until ``max_attempts``; then, and at once for non-retryable errors,
the job is parked as ``failed`` with its error (``payweave jobs`` lists, retries, cancels).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payweave.core.errors import JobNotFound, JobStateError
from payweave.core.settings import JobSettings
from payweave.core.store import JobRow, Store
from payweave.hooks.retry import RetryPolicy

from .clock import SYSTEM_CLOCK, Clock


class JobKind(StrEnum):
    CAPTURE = "capture"
    """Capture via job queue (payload: transaction_id, amount, request_id)."""
    REFUND = "refund"
    """Refund/credit of a posted return document via job queue (payload: document ref)."""
    LATE_CAPTURE = "late_capture"
    """Capture shortly before the reservation expires (payload: transaction_id, expires_at)."""
    RENEW_RESERVATION = "renew_reservation"
    """Reserve anew before the reservation expires (payload: transaction_id, expires_at)."""
    RENEWAL_SCAN = "renewal_scan"
    """Find reservations close to expiry that have no renewal job yet and schedule them."""
    RECOVER_OPERATION = "recover_operation"
    """Replay a PSP call whose outcome is unknown, with its own idempotency key."""
    EXPIRE_RESERVATION = "expire_reservation"
    """Mark a reservation that lapsed at the PSP as expired."""
    ERP_SYNC = "erp_sync"
    """An ERP sync run (payload: handler-defined); the sync engine registers the handler."""


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    company_id: str
    kind: str
    status: JobStatus
    due_at: datetime
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    last_error_code: str | None
    dedupe_key: str | None
    transaction_id: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: JobRow) -> JobView:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    company_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    transaction_id: str | None
    owner: str


class JobQueue:
    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK, settings: JobSettings | None = None) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or JobSettings()
        self.policy = RetryPolicy(
            max_attempts=min(self.settings.max_attempts, 20),
            base_delay=self.settings.backoff_base,
            max_delay=self.settings.backoff_max,
            max_retry_after=self.settings.backoff_max,
        )
        self._rng = random.Random()

    # ------------------------------------------------------------------ writing
    def enqueue(
        self,
        session: Session,
        *,
        company_id: str,
        kind: JobKind | str,
        payload: dict[str, Any] | None = None,
        due_at: datetime | None = None,
        dedupe_key: str | None = None,
        transaction_id: str | None = None,
        max_attempts: int | None = None,
    ) -> JobRow:
        """Add a job inside the caller's transaction (committed with the state that caused it).

        With ``dedupe_key`` a job is created once per company: a second enqueue returns the first.
        """
        now = self.clock.now()
        if dedupe_key is not None:
            existing = session.scalars(
                select(JobRow).where(JobRow.company_id == company_id, JobRow.dedupe_key == dedupe_key)
            ).first()
            if existing is not None:
                return existing
        row = JobRow(
            company_id=company_id,
            kind=str(kind),
            status=JobStatus.PENDING.value,
            due_at=due_at or now,
            payload=dict(payload or {}),
            attempts=0,
            max_attempts=max_attempts or self.settings.max_attempts,
            dedupe_key=dedupe_key,
            transaction_id=transaction_id,
            created_at=now,
            updated_at=now,
        )
        if dedupe_key is None:
            session.add(row)
            session.flush()
            return row
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            existing = session.scalars(
                select(JobRow).where(JobRow.company_id == company_id, JobRow.dedupe_key == dedupe_key)
            ).one()
            return existing
        return row

    def cancel_pending(self, session: Session, *, company_id: str, kind: str, transaction_id: str, reason: str) -> int:
        """Cancel pending jobs of ``kind`` for a transaction (e.g. a late capture after renewal)."""
        now = self.clock.now()
        result = session.execute(
            update(JobRow)
            .where(
                JobRow.company_id == company_id,
                JobRow.kind == kind,
                JobRow.transaction_id == transaction_id,
                JobRow.status == JobStatus.PENDING.value,
            )
            .values(status=JobStatus.CANCELLED.value, last_error=reason, updated_at=now, finished_at=now)
        )
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ claiming
    def claim(self, owner: str, *, limit: int | None = None, lease_seconds: float | None = None) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs for ``owner`` under a lease."""
        now = self.clock.now()
        lease = timedelta(seconds=lease_seconds or self.settings.lease_seconds)
        limit = limit or self.settings.batch_size
        due = or_(
            and_(JobRow.status == JobStatus.PENDING.value, JobRow.due_at <= now),
            and_(JobRow.status == JobStatus.RUNNING.value, JobRow.lease_expires_at < now),
        )
        query = select(JobRow).where(due).order_by(JobRow.due_at, JobRow.id).limit(limit)
        if self.store.is_postgres:
            query = query.with_for_update(skip_locked=True)
        claimed: list[ClaimedJob] = []
        with self.store.transaction() as session:
            for row in session.scalars(query).all():
                row.status = JobStatus.RUNNING.value
                row.lease_owner = owner
                row.lease_expires_at = now + lease
                row.attempts += 1
                row.updated_at = now
                claimed.append(
                    ClaimedJob(
                        id=row.id,
                        company_id=row.company_id,
                        kind=row.kind,
                        payload=dict(row.payload or {}),
                        attempts=row.attempts,
                        max_attempts=row.max_attempts,
                        transaction_id=row.transaction_id,
                        owner=owner,
                    )
                )
        return claimed

    def extend_lease(self, job: ClaimedJob, *, lease_seconds: float | None = None) -> bool:
        """Renew the lease before working on a claimed job; False if another worker took it."""
        now = self.clock.now()
        lease = timedelta(seconds=lease_seconds or self.settings.lease_seconds)
        with self.store.transaction() as session:
            result = session.execute(
                update(JobRow)
                .where(JobRow.id == job.id, JobRow.lease_owner == job.owner, JobRow.status == JobStatus.RUNNING.value)
                .values(lease_expires_at=now + lease, updated_at=now)
            )
            return bool(result.rowcount)

    def complete(self, job: ClaimedJob, result: dict[str, Any] | None = None) -> bool:
        now = self.clock.now()
        with self.store.transaction() as session:
            outcome = session.execute(
                update(JobRow)
                .where(JobRow.id == job.id, JobRow.lease_owner == job.owner, JobRow.status == JobStatus.RUNNING.value)
                .values(
                    status=JobStatus.DONE.value,
                    result=result or {},
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            return bool(outcome.rowcount)

    def fail(
        self,
        job: ClaimedJob,
        *,
        code: str,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
    ) -> JobStatus:
        """Record a failure: back off and retry, or park as failed."""
        now = self.clock.now()
        if retryable and job.attempts < job.max_attempts:
            delay = self.policy.delay(job.attempts, retry_after, rng=self._rng)
            values: dict[str, Any] = {
                "status": JobStatus.PENDING.value,
                "due_at": now + timedelta(seconds=delay),
            }
            status = JobStatus.PENDING
        else:
            values = {"status": JobStatus.FAILED.value, "finished_at": now}
            status = JobStatus.FAILED
            if retryable:
                message = f"{message} (gave up after {job.attempts} attempts)"
        values.update(last_error=message, last_error_code=code, lease_owner=None, lease_expires_at=None, updated_at=now)
        with self.store.transaction() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job.id, JobRow.lease_owner == job.owner, JobRow.status == JobStatus.RUNNING.value)
                .values(**values)
            )
        return status

    # ------------------------------------------------------------------ administration
    def get(self, job_id: int, *, company_id: str | None = None) -> JobView:
        with self.store.transaction() as session:
            return JobView.of(self._row(session, job_id, company_id))

    def _row(self, session: Session, job_id: int, company_id: str | None) -> JobRow:
        query = select(JobRow).where(JobRow.id == job_id)
        if company_id is not None:
            query = query.where(JobRow.company_id == company_id)
        row = session.scalars(query).first()
        if row is None:
            raise JobNotFound(f"There is no job {job_id}.", details={"job_id": job_id})
        return row

    def list(
        self,
        *,
        company_id: str | None = None,
        status: JobStatus | str | None = None,
        kind: str | None = None,
        transaction_id: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        query = select(JobRow)
        if company_id is not None:
            query = query.where(JobRow.company_id == company_id)
        if status is not None:
            query = query.where(JobRow.status == str(JobStatus(status)))
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if transaction_id is not None:
            query = query.where(JobRow.transaction_id == transaction_id)
        query = query.order_by(JobRow.due_at, JobRow.id).limit(limit)
        with self.store.transaction() as session:
            return [JobView.of(row) for row in session.scalars(query).all()]

    def counts(self, *, company_id: str | None = None) -> dict[str, int]:
        query = select(JobRow.status, func.count()).group_by(JobRow.status)
        if company_id is not None:
            query = query.where(JobRow.company_id == company_id)
        with self.store.transaction() as session:
            return {status: int(n) for status, n in session.execute(query).all()}

    def retry(self, job_id: int, *, company_id: str | None = None) -> JobView:
        """Put a failed or cancelled job back in the queue, due now, with fresh attempts."""
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self._row(session, job_id, company_id)
            if row.status not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
                raise JobStateError(
                    f"Job {job_id} is {row.status}; only failed or cancelled jobs can be retried.",
                    details={"job_id": job_id, "status": row.status},
                )
            row.status = JobStatus.PENDING.value
            row.due_at = now
            row.attempts = 0
            row.finished_at = None
            row.updated_at = now
            return JobView.of(row)

    def cancel(self, job_id: int, *, company_id: str | None = None) -> JobView:
        now = self.clock.now()
        with self.store.transaction() as session:
            row = self._row(session, job_id, company_id)
            if row.status not in (JobStatus.PENDING.value, JobStatus.FAILED.value):
                raise JobStateError(
                    f"Job {job_id} is {row.status}; only pending or failed jobs can be cancelled.",
                    details={"job_id": job_id, "status": row.status},
                )
            row.status = JobStatus.CANCELLED.value
            row.lease_owner = None
            row.lease_expires_at = None
            row.finished_at = now
            row.updated_at = now
            return JobView.of(row)

"""The durable job queue on both backends, with a clock the test moves instead of sleeping."""
from __future__ import annotations

from datetime import timedelta

import pytest

from payweave.core.errors import JobNotFound, JobStateError, OperationOutcomeUnknown, UnknownJobKind
from payweave.core.jobs.clock import ManualClock
from payweave.core.jobs.handlers import current_handler, register_handler, unregister_handler
from payweave.core.jobs.queue import JobKind, JobQueue, JobStatus
from payweave.core.jobs.worker import Worker
from payweave.core.settings import JobSettings
from payweave.hooks.errors import InvalidRequest


@pytest.fixture
def queue(store, clock: ManualClock) -> JobQueue:
    return JobQueue(store, clock=clock, settings=JobSettings(lease_seconds=30, max_attempts=4, backoff_base=2, backoff_max=60))


def add(queue: JobQueue, *, company: str = "CRONUS", kind: str = "test", due_in: float = 0, **kw) -> int:
    with queue.store.transaction() as s:
        return queue.enqueue(s, company_id=company, kind=kind, due_at=queue.clock.now() + timedelta(seconds=due_in), **kw).id


def test_only_due_jobs_are_claimed_and_time_moves_by_the_clock(queue, clock):
    later = add(queue, due_in=60)
    now = add(queue)
    (first,) = queue.claim("w1")
    assert first.id == now
    assert queue.claim("w1") == []
    assert queue.complete(first)
    clock.advance(61)
    claimed = queue.claim("w1")
    assert [j.id for j in claimed] == [later] and claimed[0].attempts == 1


def test_dedupe_key_creates_a_job_once_per_company(queue):
    first = add(queue, dedupe_key="late_capture:tx-1")
    assert add(queue, dedupe_key="late_capture:tx-1") == first
    assert add(queue, company="OTHER", dedupe_key="late_capture:tx-1") != first
    assert len(queue.list(company_id="CRONUS")) == 1


def test_an_expired_lease_lets_another_worker_take_the_job(queue, clock):
    job_id = add(queue)
    (dead,) = queue.claim("dead-worker")
    assert queue.claim("w2") == []
    clock.advance(31)
    (taken,) = queue.claim("w2")
    assert taken.id == job_id and taken.attempts == 2 and taken.owner == "w2"
    assert not queue.complete(dead)  # the dead worker's lease is gone: its completion is fenced off
    assert queue.complete(taken)
    assert queue.get(job_id).status is JobStatus.DONE


def test_retryable_failures_back_off_exponentially_with_jitter_then_park(queue, clock):
    job_id = add(queue)
    delays = []
    for attempt in range(1, 5):
        (job,) = queue.claim("w")
        assert job.attempts == attempt
        status = queue.fail(job, code="temporarily_unavailable", message="PSP down", retryable=True)
        view = queue.get(job_id)
        if attempt < 4:
            assert status is JobStatus.PENDING
            delay = (view.due_at - clock.now()).total_seconds()
            ceiling = min(60, 2 * 2 ** (attempt - 1))
            assert ceiling / 2 <= delay <= ceiling
            delays.append(delay)
            clock.advance(delay)
        else:
            assert status is JobStatus.FAILED
            assert view.last_error == "PSP down (gave up after 4 attempts)" and view.last_error_code == "temporarily_unavailable"
    assert delays[0] < delays[-1]


def test_non_retryable_errors_park_immediately(queue):
    job_id = add(queue)
    (job,) = queue.claim("w")
    assert queue.fail(job, code="invalid_request", message="no such payment", retryable=False) is JobStatus.FAILED
    assert queue.get(job_id).attempts == 1


def test_retry_and_cancel(queue, clock):
    job_id = add(queue)
    (job,) = queue.claim("w")
    with pytest.raises(JobStateError):
        queue.cancel(job_id)  # running
    queue.fail(job, code="x", message="broken", retryable=False)
    view = queue.retry(job_id)
    assert view.status is JobStatus.PENDING and view.attempts == 0 and view.due_at == clock.now()
    cancelled = queue.cancel(job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert queue.claim("w") == []
    with pytest.raises(JobStateError):
        queue.cancel(job_id)
    queue.retry(job_id)
    (again,) = queue.claim("w")
    queue.complete(again)
    with pytest.raises(JobStateError):
        queue.retry(job_id)
    with pytest.raises(JobNotFound):
        queue.retry(job_id, company_id="OTHER")
    with pytest.raises(JobNotFound):
        queue.get(999_999)


def test_worker_runs_handlers_and_records_outcomes(engine, clock):
    calls: list[dict] = []

    def ok(ctx):
        calls.append(ctx.payload)
        return {"seen": ctx.payload["n"]}

    def flaky(ctx):
        raise OperationOutcomeUnknown("PSP did not answer")

    def wrong(ctx):
        raise InvalidRequest("the PSP has no such payment")

    def buggy(ctx):
        raise KeyError("oops")

    for kind, fn in (("t_ok", ok), ("t_flaky", flaky), ("t_wrong", wrong), ("t_buggy", buggy)):
        register_handler(kind, fn, replace=True)
    try:
        ids = {}
        with engine.store.transaction() as s:
            for kind in ("t_ok", "t_flaky", "t_wrong", "t_buggy", "t_unknown"):
                ids[kind] = engine.jobs.enqueue(s, company_id="CRONUS", kind=kind, payload={"n": 1}).id
        worker = Worker(engine, name="w", recover_on_start=False, renewal_scan=False)
        assert worker.run_once() == 5
        q = engine.jobs
        assert q.get(ids["t_ok"]).status is JobStatus.DONE and q.get(ids["t_ok"]).result == {"seen": 1}
        assert q.get(ids["t_flaky"]).status is JobStatus.PENDING
        assert q.get(ids["t_wrong"]).status is JobStatus.FAILED
        assert q.get(ids["t_buggy"]).last_error == "KeyError: 'oops'"
        unknown = q.get(ids["t_unknown"])
        assert unknown.status is JobStatus.FAILED and unknown.last_error_code == UnknownJobKind.code
        assert calls == [{"n": 1}]
    finally:
        for kind in ("t_ok", "t_flaky", "t_wrong", "t_buggy"):
            unregister_handler(kind)


def test_erp_sync_jobs_wait_for_the_sync_engine_to_register(engine):
    """The erp_sync kind exists in the core; the sync engine plugs its handler in."""
    installed = current_handler("erp_sync")  # the sync engine's, when it was imported
    unregister_handler("erp_sync")
    try:
        with engine.store.transaction() as s:
            job_id = engine.jobs.enqueue(s, company_id="CRONUS", kind=JobKind.ERP_SYNC, payload={"entity": "invoices"}).id
        worker = Worker(engine, name="w", recover_on_start=False, renewal_scan=False)
        worker.run_once()
        parked = engine.jobs.get(job_id)
        assert parked.status is JobStatus.FAILED and "ERP sync engine" in parked.last_error
        seen = []
        register_handler("erp_sync", lambda ctx: seen.append(ctx.payload) or {"pages": 3})
        engine.jobs.retry(job_id)
        worker.run_once()
        assert engine.jobs.get(job_id).status is JobStatus.DONE and seen == [{"entity": "invoices"}]
        assert engine.jobs.get(job_id).result == {"pages": 3}
    finally:
        unregister_handler("erp_sync")
        if installed is not None:
            register_handler("erp_sync", installed)

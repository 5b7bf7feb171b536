"""Durable jobs of the ERP sync, on the core job queue (kind ``erp_sync``, ``JobKind.ERP_SYNC``).

One job kind, the ``action`` in the payload says what to do:

* ``sync``: continue the initial sync or run a delta (``entities`` limits it, ``full`` re-reads
  everything); then schedules the next fallback poll and records in the ERP what payweave
  collected and the ERP lacks (:func:`payweave.core.reconcile.reconcile_company`).
* ``writeback``: send one pending write-back (``writeback_id``) to the ERP.
* ``renew_subscriptions``: renew the ERP webhook subscriptions before they expire; schedules the
  next renewal.
* ``dispatch_document_events``: hand pulled document events to the engine.

Importing this module registers the ``erp_sync`` handler in the worker's registry
(:func:`payweave.core.jobs.handlers.register_handler`); it builds one :class:`ErpSyncService` per
engine (same store, plugins, clock and queue; pulled document events go to
``engine.handle_event``). :func:`handle_erp_job` runs a job on any service. Errors are the
contract's typed errors; ``retryable`` ones (ERP unavailable, another sync running, accounts
not set up yet) back off, the rest park the job.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payweave.core.errors import UnknownJobKind
from payweave.hooks.errors import PayweaveError
from payweave.core.jobs.handlers import JobContext, register_handler
from payweave.core.jobs.queue import ClaimedJob, JobKind, JobQueue, JobStatus
from payweave.core.store.models import JobRow
from payweave.hooks.models import SyncEntity

if TYPE_CHECKING:
    from payweave.core.engine import PaymentEngine

    from .service import ErpSyncService

KIND = JobKind.ERP_SYNC.value
ACTION_SYNC = "sync"
ACTION_WRITEBACK = "writeback"
ACTION_RENEW = "renew_subscriptions"
ACTION_DISPATCH = "dispatch_document_events"
ACTIONS = (ACTION_SYNC, ACTION_WRITEBACK, ACTION_RENEW, ACTION_DISPATCH)


def _pending(session: Session, company_id: str, action: str, **match: Any) -> JobRow | None:
    rows = session.scalars(select(JobRow).where(
        JobRow.company_id == company_id, JobRow.kind == KIND, JobRow.status == JobStatus.PENDING.value,
    ).order_by(JobRow.id)).all()
    for row in rows:
        payload = row.payload or {}
        if payload.get("action") == action and all(payload.get(k) == v for k, v in match.items()):
            return row
    return None


def enqueue_erp_job(queue: JobQueue, session: Session, *, company_id: str, action: str,
                    due_at: datetime | None = None, **payload: Any) -> JobRow:
    """Add an ERP job in the caller's transaction, merged into a pending one of the same action:

    * ``sync``: one pending sync per company; entity lists are united (None = all entities),
      ``full`` wins, the earlier due time wins.
    * ``writeback``: one pending job per write-back id.
    * ``renew_subscriptions`` / ``dispatch_document_events``: one pending job per company.
    """
    if action not in ACTIONS:
        raise UnknownJobKind(f"Unknown ERP job action {action!r}.", details={"action": action})
    due_at = due_at or queue.clock.now()  # no due time = now (a notification must not wait for a poll)
    match = {"writeback_id": payload["writeback_id"]} if action == ACTION_WRITEBACK else {}
    existing = _pending(session, company_id, action, **match)
    if existing is not None:
        merged = dict(existing.payload or {})
        if action == ACTION_SYNC:
            old, new = merged.get("entities"), payload.get("entities")
            merged["entities"] = None if old is None or new is None else sorted(set(old) | set(new))
            merged["full"] = bool(merged.get("full")) or bool(payload.get("full"))
        existing.payload = merged
        if due_at < existing.due_at:
            existing.due_at = due_at
        return existing
    body = {"action": action, **payload}
    if action == ACTION_SYNC:
        entities = payload.get("entities")
        body["entities"] = sorted(SyncEntity(e).value for e in entities) if entities is not None else None
    return queue.enqueue(session, company_id=company_id, kind=KIND, payload=body, due_at=due_at)


def handle_erp_job(service: ErpSyncService, job: ClaimedJob) -> dict[str, Any]:
    """Run one claimed ``erp_sync`` job; returns a JSON-able result for the job row."""
    if job.kind != KIND:
        raise UnknownJobKind(f"handle_erp_job got a {job.kind!r} job.", details={"kind": job.kind})
    payload = job.payload
    action = payload.get("action", ACTION_SYNC)
    company_id = job.company_id
    if action == ACTION_SYNC:
        entities = payload.get("entities")
        report = service.run_sync(
            company_id, full=bool(payload.get("full")),
            entities=[SyncEntity(e) for e in entities] if entities is not None else None,
        )
        service.schedule_next_poll(company_id)
        result = report.as_json()
        # then record in the ERP what payweave collected and the ERP lacks (payments, payouts):
        # the invoices this sync brought in are what captured payments are applied to
        from payweave.core.reconcile import reconcile_company

        try:
            result["reconciled"] = reconcile_company(service, company_id)
        except PayweaveError as exc:  # the sync itself succeeded; the next run retries this part
            service.log.warning("erp.reconcile.failed", code=exc.code, error=exc.message)
            result["reconciled"] = {"error": exc.code}
        return result
    if action == ACTION_WRITEBACK:
        view = service.process_writeback(int(payload["writeback_id"]))
        return {"writeback_id": view.id, "status": view.status, "document_number": view.document_number,
                "already_existed": view.already_existed}
    if action == ACTION_RENEW:
        expiry = service.renew_subscriptions_if_due(company_id)
        return {"subscriptions_expire_at": expiry.isoformat() if expiry else None}
    if action == ACTION_DISPATCH:
        report = service.dispatch_document_events(company_id)
        return report.as_json()
    raise UnknownJobKind(f"Unknown ERP job action {action!r}.", details={"action": action})


def erp_job_handler(service: ErpSyncService) -> Callable[[ClaimedJob], dict[str, Any]]:
    """A handler bound to ``service``, for a worker's registry of job kinds."""
    return lambda job: handle_erp_job(service, job)


_services: weakref.WeakKeyDictionary[Any, ErpSyncService] = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def service_for_engine(engine: PaymentEngine) -> ErpSyncService:
    """The sync service that runs ERP jobs for ``engine`` (one per engine, created on first use)."""
    from .service import ErpSyncService
    from .settings import SyncSettings

    with _services_lock:
        service = _services.get(engine)
        if service is None:
            service = ErpSyncService(
                engine.store, engine.plugins, settings=SyncSettings(), clock=engine.clock, queue=engine.jobs,
                public_base_url=engine.settings.service.public_base_url, document_event_handler=engine.handle_event,
            )
            _services[engine] = service
        return service


def erp_sync_job(ctx: JobContext) -> dict[str, Any]:
    """The worker's handler of ``erp_sync`` jobs."""
    return handle_erp_job(service_for_engine(ctx.engine), ctx.job)


register_handler(KIND, erp_sync_job, replace=True)

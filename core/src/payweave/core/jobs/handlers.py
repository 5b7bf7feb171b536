"""Job handlers: one function per job kind, looked up in a registry.

A handler gets a :class:`JobContext` and returns a small JSON-able result (stored on the job)
or raises a typed error: retryable errors (``error.retryable``) back the job off, every other
error parks it as failed. Handlers must be safe to run twice for the same job (a worker may die
after the work and before marking the job done): the built-in ones pass a ``request_id``
derived from the job or its subject to the engine, which performs an operation once per id.

Other components plug in with :func:`register_handler`, e.g. the ERP sync engine::

    from payweave.core.jobs.handlers import register_handler
    register_handler("erp_sync", run_sync_job)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from payweave.core.errors import UnknownJobKind
from payweave.core.store import JobRow, PaymentMethodRow, TransactionRow
from payweave.hooks.money import from_minor_units

from .queue import ClaimedJob, JobKind

if TYPE_CHECKING:
    from payweave.core.engine import PaymentEngine

#: Company id of jobs that are not about one company (the renewal scan).
SYSTEM_COMPANY = "_system"


@dataclass(frozen=True)
class JobContext:
    engine: PaymentEngine
    job: ClaimedJob

    @property
    def actor(self) -> str:
        return f"job:{self.job.id}"

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload


JobHandler = Callable[[JobContext], "dict[str, Any] | None"]

_handlers: dict[str, JobHandler] = {}


def register_handler(kind: str, handler: JobHandler, *, replace: bool = False) -> None:
    """Register the handler of job ``kind`` (``replace=True`` to override an existing one)."""
    if kind in _handlers and not replace and _handlers[kind] is not handler:
        raise ValueError(f"a handler for job kind {kind!r} is registered already")
    _handlers[kind] = handler


def unregister_handler(kind: str) -> None:
    _handlers.pop(kind, None)


def current_handler(kind: str) -> JobHandler | None:
    """The handler registered for ``kind``, or None."""
    return _handlers.get(kind)


def handler_for(kind: str) -> JobHandler:
    handler = _handlers.get(kind)
    if handler is None:
        hint = " (the ERP sync engine registers it; is it installed and started?)" if kind == JobKind.ERP_SYNC else ""
        raise UnknownJobKind(
            f"No handler is registered for job kind {kind!r}{hint}.",
            details={"kind": kind, "registered": sorted(_handlers)},
        )
    return handler


def registered_kinds() -> list[str]:
    return sorted(_handlers)


# ============================================================================================
# built-in handlers
# ============================================================================================
def _superseded(ctx: JobContext, tx: TransactionRow) -> str | None:
    expected = ctx.payload.get("expires_at")
    current = tx.expires_at.isoformat() if tx.expires_at else None
    if expected is not None and expected != current:
        return f"the reservation changed (expiry {current or 'none'} instead of {expected})"
    return None


def _load(ctx: JobContext) -> TransactionRow:
    engine = ctx.engine
    with engine.store.transaction() as s:
        return engine._load_tx(s, ctx.job.company_id, ctx.payload["transaction_id"])


def capture_job(ctx: JobContext) -> dict[str, Any]:
    """Capture via job queue: what was invoiced (``mode=invoiced``) or a fixed ``amount``."""
    engine = ctx.engine
    request_id = ctx.payload.get("request_id") or f"job:{ctx.job.id}"
    tx_id = ctx.payload["transaction_id"]
    if ctx.payload.get("mode") == "invoiced":
        view = engine.capture_invoiced(ctx.job.company_id, tx_id, actor=ctx.actor, request_id=request_id)
    else:
        view = engine.capture(ctx.job.company_id, tx_id, ctx.payload.get("amount"), actor=ctx.actor,
                              request_id=request_id, trigger="job_queue")
    return {"status": view.status.value, "captured": str(view.amounts.captured)}


def refund_job(ctx: JobContext) -> dict[str, Any]:
    """Refund (or credit) a posted return document via job queue: once per document."""
    view = ctx.engine.refund_document(
        ctx.job.company_id, ctx.payload["document_type"], ctx.payload["document_id"], actor=ctx.actor, trigger="job_queue"
    )
    return {"status": view.status.value, "refunded": str(view.amounts.refunded), "credited": str(view.amounts.credited)}


def late_capture_job(ctx: JobContext) -> dict[str, Any]:
    """Capture shortly before the reservation expires: what the document still needs, at most
    what is reserved. Runs once per reservation (the request id is the reservation's)."""
    tx = _load(ctx)
    reason = _superseded(ctx, tx)
    if reason:
        return {"skipped": reason}
    open_ = tx.authorized_minor - tx.captured_minor - tx.voided_minor - tx.expired_minor
    due = min(open_, max(tx.amount_minor - tx.captured_minor, 0))
    if due <= 0:
        return {"skipped": "nothing left to capture"}
    view = ctx.engine.capture(
        tx.company_id, tx.id, from_minor_units(due, tx.currency), actor=ctx.actor,
        request_id=f"late_capture:{tx.id}:{ctx.payload.get('expires_at')}", trigger="late_capture",
    )
    return {"status": view.status.value, "captured": str(view.amounts.captured)}


def renew_reservation_job(ctx: JobContext) -> dict[str, Any]:
    tx = _load(ctx)
    reason = _superseded(ctx, tx)
    if reason:
        return {"skipped": reason}
    if tx.authorized_minor - tx.captured_minor - tx.voided_minor - tx.expired_minor <= 0:
        return {"skipped": "nothing is reserved any more"}
    view = ctx.engine.renew_reservation(
        tx.company_id, tx.id, actor=ctx.actor, request_id=f"renew:{tx.id}:{ctx.payload.get('expires_at')}"
    )
    return {"psp_reference": view.psp_reference, "expires_at": view.expires_at.isoformat() if view.expires_at else None}


def expire_reservation_job(ctx: JobContext) -> dict[str, Any]:
    tx = _load(ctx)
    reason = _superseded(ctx, tx)
    if reason:
        return {"skipped": reason}
    view = ctx.engine.expire_reservation(tx.company_id, tx.id, actor=ctx.actor)
    return {"status": view.status.value, "expired": str(view.amounts.expired)}


def recover_operation_job(ctx: JobContext) -> dict[str, Any]:
    view = ctx.engine.recover_operation(ctx.job.company_id, int(ctx.payload["operation_id"]))
    return {"status": view.status.value}


def renewal_scan_job(ctx: JobContext) -> dict[str, Any]:
    """Find reservations close to expiry whose payment method renews them and schedule the
    renewal (safety net for reservations made before the option was switched on); then schedule
    the next scan."""
    scheduled = schedule_renewals(ctx.engine)
    interval = float(ctx.payload.get("interval_seconds", 3600))
    engine = ctx.engine
    with engine.store.transaction() as s:
        _enqueue_scan(engine, s, interval, engine.clock.now() + timedelta(seconds=interval))
    return {"scheduled": scheduled}


def _enqueue_scan(engine: PaymentEngine, s: Any, interval: float, due: Any) -> None:
    # one scan per interval bucket: workers starting together share it (unique dedupe key)
    bucket = int(due.timestamp() // interval)
    engine.jobs.enqueue(
        s, company_id=SYSTEM_COMPANY, kind=JobKind.RENEWAL_SCAN, payload={"interval_seconds": interval},
        due_at=due, dedupe_key=f"renewal_scan:{int(interval)}:{bucket}",
    )


def schedule_renewals(engine: PaymentEngine) -> int:
    """Schedule a renewal job for every reservation expiring within the renewal margin."""
    now = engine.clock.now()
    horizon = now + timedelta(seconds=engine.settings.jobs.renewal_margin_seconds)
    count = 0
    with engine.store.transaction() as s:
        rows = s.execute(
            select(TransactionRow, PaymentMethodRow)
            .join(
                PaymentMethodRow,
                (PaymentMethodRow.company_id == TransactionRow.company_id)
                & (PaymentMethodRow.code == TransactionRow.payment_method_code),
            )
            .where(TransactionRow.expires_at.is_not(None), TransactionRow.expires_at <= horizon,
                   TransactionRow.expires_at > now, TransactionRow.status.in_(("reserved", "partly_voided")))
        ).all()
        for tx, method in rows:
            if not (method.options or {}).get("allow_reservation_renewal"):
                continue
            stamp = tx.expires_at.isoformat()
            key = f"renew:{tx.id}:{stamp}"
            known = s.scalars(select(JobRow.id).where(JobRow.company_id == tx.company_id, JobRow.dedupe_key == key)).first()
            if known is not None:
                continue
            engine.jobs.enqueue(
                s, company_id=tx.company_id, kind=JobKind.RENEW_RESERVATION,
                payload={"transaction_id": tx.id, "expires_at": stamp}, due_at=now, dedupe_key=key, transaction_id=tx.id,
            )
            count += 1
    return count


def ensure_renewal_scan(engine: PaymentEngine, *, interval_seconds: float = 3600) -> None:
    """Make sure a renewal scan is queued (workers call this when they start)."""
    now = engine.clock.now()
    with engine.store.transaction() as s:
        pending = s.scalars(
            select(JobRow.id).where(JobRow.kind == JobKind.RENEWAL_SCAN.value, JobRow.status.in_(("pending", "running")))
        ).first()
        if pending is None:
            _enqueue_scan(engine, s, interval_seconds, now)


for _kind, _handler in (
    (JobKind.CAPTURE, capture_job),
    (JobKind.REFUND, refund_job),
    (JobKind.LATE_CAPTURE, late_capture_job),
    (JobKind.RENEW_RESERVATION, renew_reservation_job),
    (JobKind.EXPIRE_RESERVATION, expire_reservation_job),
    (JobKind.RECOVER_OPERATION, recover_operation_job),
    (JobKind.RENEWAL_SCAN, renewal_scan_job),
):
    register_handler(_kind.value, _handler)

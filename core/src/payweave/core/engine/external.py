"""The engine's exactly-once protocol for PSP calls the engine's operation table does not cover
(payment-link creation, mandate charges).

Same protocol as :mod:`payweave.core.engine.service`: under the document's lock the intent is
committed with the request and an idempotency key derived from the transaction and its step
(``pw-<transaction>-<seq>-<kind>``, the seq taken from the transaction's own counter, so keys
never collide with the engine's); then the PSP is called; then the outcome is committed. A call
whose outcome is unknown (timeout, 5xx) is replayed with its *stored* request and key when the
same request comes again (the caller's request id) or from :meth:`ExternalCalls.recover`, so
the PSP returns the first outcome instead of creating a second link or charging twice.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from structlog.contextvars import bound_contextvars

from payweave.core.errors import OperationOutcomeUnknown, restore_error
from payweave.core.logging import get_logger
from payweave.core.metrics import OPERATIONS, labelled
from payweave.core.store import TransactionRow
from payweave.core.store.service_models import ServiceOperationRow
from payweave.hooks.errors import PayweaveError, TemporarilyUnavailable
from payweave.hooks.models import Account

from .psp_events import PspEvents, add_history, doc_lock_key
from .service import PaymentEngine
from .views import TransactionView

STARTED, UNKNOWN, SUCCEEDED, FAILED = "started", "unknown", "succeeded", "failed"


class ExternalCalls:
    """Base for services that call the PSP outside the engine's operation table."""

    #: ``kind`` of the ServiceOperationRow this service writes.
    kind: str = ""
    #: Request model stored with the intent (replayed as is).
    request_model: type[BaseModel]

    def __init__(self, engine: PaymentEngine, events: PspEvents | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.events = events or PspEvents(engine)
        self.log = get_logger(component=self.kind or "external")

    # ---- to implement -------------------------------------------------------------------------
    def invoke(self, account: Account, request: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_success(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, result: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def on_failure(self, s: Session, op: ServiceOperationRow, tx: TransactionRow, exc: PayweaveError) -> None:
        """Record a final refusal on the transaction (the default only writes history)."""

    # ---- protocol -----------------------------------------------------------------------------
    @contextmanager
    def locked(self, company_id: str, tx_id: str) -> Iterator[None]:
        with self.events.locked(company_id, tx_id):
            yield

    def by_request(self, s: Session, company_id: str, request_id: str) -> ServiceOperationRow | None:
        return s.scalars(
            select(ServiceOperationRow).where(
                ServiceOperationRow.company_id == company_id,
                ServiceOperationRow.request_id == request_id,
                ServiceOperationRow.kind == self.kind,
            )
        ).first()

    def begin(
        self,
        s: Session,
        tx: TransactionRow,
        *,
        request_id: str,
        actor: str,
        build: Callable[[str], BaseModel],
        context: dict[str, Any] | None = None,
    ) -> ServiceOperationRow:
        """Commit the intent (the caller commits the session): request and idempotency key."""
        seq = tx.next_seq
        key = f"pw-{tx.id}-{seq}-{self.kind}"
        request = build(key)
        now = self.engine.clock.now()
        op = ServiceOperationRow(
            company_id=tx.company_id,
            transaction_id=tx.id,
            kind=self.kind,
            status=STARTED,
            request_id=request_id,
            idempotency_key=key,
            actor=actor,
            amount_minor=tx.amount_minor,
            currency=tx.currency,
            request=request.model_dump(mode="json"),
            context=context or {},
            attempts=0,
            created_at=now,
        )
        tx.next_seq = seq + 1
        tx.updated_at = now
        s.add(op)
        s.flush()
        return op

    def call(self, op_id: int) -> None:
        """Send the stored request to the PSP and commit the outcome (caller holds the lock)."""
        with self.store.transaction() as s:
            op = s.get(ServiceOperationRow, op_id)
            assert op is not None
            tx = s.get(TransactionRow, op.transaction_id)
            assert tx is not None
            request = self.request_model.model_validate(op.request)
            psp, account_name = tx.psp, tx.psp_account
            key = op.idempotency_key
        account = self.engine.account(psp, account_name)
        with bound_contextvars(plugin=psp, idempotency_key=key, operation=self.kind):
            try:
                result = self.invoke(account, request)
            except TemporarilyUnavailable as exc:
                self._record(op_id, UNKNOWN, exc)
                labelled(OPERATIONS, self.kind, "unknown").inc()
                raise OperationOutcomeUnknown(
                    f"The PSP did not answer the {self.kind.replace('_', ' ')} ({exc.message}); repeat the request "
                    f"and payweave replays it with the same idempotency key, so it cannot happen twice.",
                    details={"service_operation_id": op_id, "cause": exc.code},
                ) from exc
            except PayweaveError as exc:
                self._record(op_id, FAILED, exc)
                labelled(OPERATIONS, self.kind, exc.code).inc()
                raise
        with self.store.transaction() as s:
            op = s.get(ServiceOperationRow, op_id)
            tx = s.get(TransactionRow, op.transaction_id) if op is not None else None
            assert op is not None and tx is not None
            op.status = SUCCEEDED
            op.attempts += 1
            op.result = result.model_dump(mode="json")
            op.completed_at = self.engine.clock.now()
            op.error_code = op.error_message = op.error_details = None
            self.on_success(s, op, tx, result)
            s.flush()
            self.events._apply_unmatched(s, tx)
            self.events._reapply_deferred(s, tx)
        labelled(OPERATIONS, self.kind, "succeeded").inc()

    def _record(self, op_id: int, status: str, exc: PayweaveError) -> None:
        with self.store.transaction() as s:
            op = s.get(ServiceOperationRow, op_id)
            assert op is not None
            tx = s.get(TransactionRow, op.transaction_id)
            assert tx is not None
            op.status = status
            op.attempts += 1
            op.error_code, op.error_message, op.error_details = exc.code, exc.message, exc.details
            now = self.engine.clock.now()
            if status == FAILED:
                op.completed_at = now
                self.on_failure(s, op, tx, exc)
            add_history(
                s, tx, f"{self.kind}_{'unanswered' if status == UNKNOWN else 'failed'}", actor=op.actor,
                trigger="manual", now=now, outcome="unknown" if status == UNKNOWN else "failed",
                message=(f"The PSP did not answer ({exc.message}); the call will be replayed with the same idempotency key."
                         if status == UNKNOWN else exc.message),
                details={"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
                idempotency_key=op.idempotency_key,
            )
        self.log.warning("external_call.failed", kind=self.kind, status=status, code=exc.code)

    def settle(self, op: ServiceOperationRow) -> None:
        """Answer a repeated request: finish the first call if needed, or repeat its refusal."""
        if op.status in (STARTED, UNKNOWN):
            with self.locked(op.company_id, op.transaction_id):
                with self.store.transaction() as s:
                    fresh = s.get(ServiceOperationRow, op.id)
                    assert fresh is not None
                    status = fresh.status
                if status in (STARTED, UNKNOWN):
                    self.call(op.id)
                    return
                op = fresh
        if op.status == FAILED:
            raise restore_error(op.error_code, op.error_message, op.error_details)

    def recover(self, limit: int = 100) -> int:
        """Replay calls whose outcome is unknown (a sweep for the worker)."""
        with self.store.transaction() as s:
            rows = s.scalars(
                select(ServiceOperationRow)
                .where(ServiceOperationRow.kind == self.kind, ServiceOperationRow.status.in_((STARTED, UNKNOWN)))
                .order_by(ServiceOperationRow.id)
                .limit(limit)
            ).all()
        done = 0
        for op in rows:
            try:
                self.settle(op)
                done += 1
            except PayweaveError as exc:
                self.log.warning("external_call.unresolved", kind=self.kind, op=op.id, code=exc.code)
        return done

    def view(self, company_id: str, tx_id: str) -> TransactionView:
        return self.engine.get_transaction(company_id, tx_id)


__all__ = ["FAILED", "STARTED", "SUCCEEDED", "UNKNOWN", "ExternalCalls", "doc_lock_key"]

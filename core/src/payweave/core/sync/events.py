"""DESIGN 5a "pull": document events read from the companion API reach the payment engine.

The delta sync stores each :class:`~payweave.hooks.models.DocumentEvent` in the
``erp_document_events`` inbox in the same transaction as the event stream's cursor (so none is
lost or skipped); :meth:`EventsMixin.dispatch_document_events` then hands pending events, in
arrival order, to a handler, by default ``PaymentEngine.handle_event``:

* success -> ``dispatched`` (the engine's result kept);
* the document carries no payweave payment method -> ``ignored``;
* any other refusal -> ``refused`` with the reason (a later event of the same document, e.g. a
  re-release after the user fixed it, is still dispatched);
* a transient failure (engine or PSP unavailable, document busy) -> stays ``pending``, and the
  document's later events wait behind it, so one document's events never overtake each other.

Delivery is at least once; the engine deduplicates on ``event_id``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select

from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import DocumentEvent

from .models import ErpDocumentEventRow

if TYPE_CHECKING:
    from .service import ErpSyncService

DocumentEventHandler = Callable[[DocumentEvent], Any]
NOT_OURS = "document_not_payweave"


@dataclass
class DispatchReport:
    dispatched: int = 0
    ignored: int = 0
    refused: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"dispatched": self.dispatched, "ignored": self.ignored, "refused": self.refused,
                "deferred": self.deferred, "errors": self.errors}


class EventsMixin:
    """Document-event methods of :class:`~payweave.core.sync.service.ErpSyncService`."""

    def dispatch_document_events(self: ErpSyncService, company_id: str, handler: DocumentEventHandler | None = None,
                                 *, limit: int = 500) -> DispatchReport:
        handler = handler or self.document_event_handler
        report = DispatchReport()
        if handler is None:
            return report
        with self.store.transaction() as s:
            pending = [(r.id, r.document_type, r.document_id, r.payload) for r in s.scalars(
                select(ErpDocumentEventRow).where(ErpDocumentEventRow.company_id == company_id,
                                                  ErpDocumentEventRow.status == "pending")
                .order_by(ErpDocumentEventRow.id).limit(limit))]
        blocked: set[tuple[str, str]] = set()
        for row_id, doc_type, doc_id, payload in pending:
            if (doc_type, doc_id) in blocked:
                report.deferred += 1
                continue
            event = DocumentEvent.model_validate(payload)
            # the engine keys payment methods and transactions by payweave's company id
            event = event.model_copy(update={"document": event.document.model_copy(update={"company_id": company_id})})
            status, result, error = "dispatched", None, None
            try:
                outcome = handler(event)
                result = outcome.model_dump(mode="json") if isinstance(outcome, BaseModel) else None
            except PayweaveError as exc:
                error = exc
                if exc.retryable:
                    status = "pending"
                elif exc.code == NOT_OURS:
                    status = "ignored"
                else:
                    status = "refused"
            except Exception as exc:  # a bug behind the handler: keep the event, try again later
                self.log.exception("erp.document_event.handler_crashed", event_id=event.event_id)
                error = PayweaveError(f"{type(exc).__name__}: {exc}", code="internal_error")
                status = "pending"
            now = self.clock.now()
            with self.store.transaction() as s:
                row = s.get(ErpDocumentEventRow, row_id, with_for_update=True)
                if row is None or row.status != "pending":
                    continue
                row.attempts += 1
                row.status = status
                row.result = result
                row.last_error_code = error.code if error else None
                row.last_error = error.message[:2000] if error else None
                if status != "pending":
                    row.dispatched_at = now
            if status == "pending":
                blocked.add((doc_type, doc_id))
                report.deferred += 1
                report.errors.append(f"{doc_type} {doc_id}: {error.message if error else ''}")
            else:
                setattr(report, status, getattr(report, status) + 1)
        return report

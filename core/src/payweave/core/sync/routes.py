"""The ERP's webhook endpoint: ``/erp/{company_id}/notifications`` (any method).

* **Validation handshake** (BC calls the URL with ``?validationToken=...`` when a subscription
  is created or renewed): answered ``200`` with the token as ``text/plain``.
* **Notification**: the plugin verifies it (``clientState``) and names the entities; the sync
  service syncs them (a job when it has a queue). Answers ``202``.

Status codes matter: BC retries on 408, 429 and 5xx and **deletes the subscription on any
other non-2xx**. So only a notification that fails verification (not from our subscription)
gets 400 and an unknown company 404; anything transient (store or ERP unavailable) is 503.

The sync service is ``app.state.erp_sync`` when set, else the one built for
``app.state.context.engine`` (:func:`payweave.core.sync.jobs.service_for_engine`).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from payweave.hooks.errors import PayweaveError, WebhookVerificationFailed
from payweave.hooks.models import WebhookRequest

from payweave.core.service.problems import PROBLEM_JSON, Problem, problem_response

from .errors import ConnectionNotFound

router = APIRouter(tags=["erp"])


def _service(request: Request) -> Any:
    service = getattr(request.app.state, "erp_sync", None)
    if service is not None:
        return service
    context = getattr(request.app.state, "context", None)
    engine = getattr(context, "engine", None)
    if engine is None:
        return None
    from .jobs import service_for_engine

    return service_for_engine(engine)


class NotificationAccepted(BaseModel):
    """A verified notification: the entities that are being synced because of it."""

    entities: list[str]


_PROBLEMS = {
    400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not a verified notification"},
    404: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "No such ERP connection"},
    503: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Temporarily unable to sync"},
}


def _problem(status: int, exc: PayweaveError) -> Response:
    return problem_response(status, exc.code, exc.message, exc.details)


@router.get("/erp/{company_id}/notifications", summary="The ERP's webhook validation handshake",
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}, "description": "The validation token, echoed"},
                       400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "No validationToken"}})
async def erp_notifications_handshake(company_id: str, request: Request) -> Response:
    token = request.query_params.get("validationToken")
    if not token:
        return problem_response(400, "validation_token_missing",
                                "Only the ERP's validation handshake (validationToken) is answered here.")
    return PlainTextResponse(token, status_code=200)


@router.post("/erp/{company_id}/notifications", summary="ERP change notifications (webhooks) and the handshake",
             status_code=202, response_model=NotificationAccepted,
             responses={200: {"content": {"text/plain": {}}, "description": "The validation token, echoed"},
                        **_PROBLEMS})
async def erp_notifications(company_id: str, request: Request) -> Response:
    token = request.query_params.get("validationToken")
    if token:
        return PlainTextResponse(token, status_code=200)
    service = _service(request)
    if service is None:
        return problem_response(503, "erp_sync_not_configured", "The ERP sync is not configured on this service.")
    body = await request.body()
    webhook = WebhookRequest(headers=dict(request.headers), body=body, received_at=datetime.now(UTC))
    try:
        entities = await run_in_threadpool(service.handle_notification, company_id, webhook)
    except ConnectionNotFound as exc:
        return _problem(404, exc)
    except WebhookVerificationFailed as exc:
        return _problem(400, exc)
    except PayweaveError as exc:
        # transient or ours: BC retries 5xx for 36 hours, any other 4xx would delete the subscription
        return _problem(503, exc)
    return JSONResponse(NotificationAccepted(entities=[e.value for e in entities]).model_dump(), status_code=202)

"""PSP webhooks: ``POST /webhooks/{psp}/{account}``.

Authenticated by the PSP plugin's signature check (not by API keys): the raw body and headers
go to the plugin's ``psp_parse_webhook``, which verifies before it parses. Each event is stored
once (by the PSP's event id) and applied to its transaction in the same database transaction
(:mod:`payweave.core.engine.psp_events`). The answer is 200 for every verified webhook,
duplicates and unknown event types included, so the PSP stops retrying; 400 for a bad signature.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from payweave.hooks.models import WebhookRequest

from .api_models import WebhookReceipt
from .context import get_context
from .problems import PROBLEM_JSON, Problem

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    responses={
        400: _problem("The signature is missing, wrong or stale."),
        404: _problem("No such PSP plugin or account."),
        413: _problem("The body is too large."),
        422: _problem("The PSP's body cannot be read, or the PSP does not send webhooks."),
        409: _problem("The payment is busy; the PSP retries."),
    },
)


@router.post(
    "/{psp}/{account}",
    response_model=WebhookReceipt,
    summary="Receive a PSP webhook (verified by the PSP plugin's signature check)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def receive_webhook(
    request: Request,
    psp: Annotated[str, Path(pattern=_NAME, description="The PSP plugin, e.g. psp_mock.")],
    account: Annotated[str, Path(pattern=_NAME, description="The plugin account, e.g. default.")],
) -> WebhookReceipt:
    context = get_context(request)
    body = await request.body()
    clock = context.engine.clock
    incoming = WebhookRequest(
        headers={k: v for k, v in request.headers.items()}, body=body, received_at=clock.now()
    )
    outcomes = await run_in_threadpool(context.events.receive, psp, account, incoming)
    return WebhookReceipt(received=len(outcomes), events=outcomes)

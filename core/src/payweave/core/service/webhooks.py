"""PSP webhooks: ``POST /webhooks/{psp}/{account}``.

Authenticated by the PSP plugin's signature check (not by API keys): the raw body and headers
go to the plugin's ``psp_parse_webhook``, which verifies (in constant time) before it parses.
The route does only what acknowledging needs: verify, parse, and record each event once (by the
PSP's event id), committed together with the other deliveries waiting at that moment
(:mod:`payweave.core.engine.psp_inbox`); then it answers. Applying the events to their
transactions happens right after, in order (:mod:`payweave.core.engine.psp_events`).

The answer is 200 for every verified webhook once its events are committed (``received``, or
``duplicate`` for an event stored before; unknown event types included), so the PSP stops
retrying; 400 for a bad signature; 503 when the events could not be recorded (the PSP delivers
again).
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
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
        503: _problem("The events could not be recorded; the PSP delivers the webhook again."),
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
) -> Response:
    context = get_context(request)
    events = context.events
    body = await request.body()
    incoming = WebhookRequest(headers=dict(request.headers.items()), body=body, received_at=context.engine.clock.now())
    # an account of the settings is known without a query; any other one is looked up in the store
    known = events.configured_account(psp, account) or await run_in_threadpool(events.known_account, psp, account)
    # the plugin's check is CPU only (HMAC, JSON): on the event loop, no thread hop
    parsed = events.verify(psp, account, incoming, known=known)
    outcomes = await context.inbox.receive(psp, account, parsed, incoming.received_at)
    # serialized here, once (the route's response_model documents it; no second validation)
    return Response(WebhookReceipt(received=len(outcomes), events=outcomes).model_dump_json(),
                    media_type="application/json")

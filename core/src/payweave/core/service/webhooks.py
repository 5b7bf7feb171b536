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

This is the service's busiest route (every event of every payment), so it has an express lane:
:class:`WebhookLane`, an ASGI middleware inside the request-id/logging and body-size middlewares,
takes ``POST /webhooks/{psp}/{account}`` with well-formed names straight to :func:`accept`,
without the router's matching, FastAPI's dependency solving and its request/response wrappers
(together more than the route's own work). Its refusals are the same problem documents with the
same codes (:func:`payweave.core.service.problems.payweave_error_response`). Anything else (other
methods, names the route's pattern refuses) goes through the router to :func:`receive_webhook`,
the documented route, which runs the same :func:`accept`.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import WebhookRequest

from .api_models import WebhookReceipt
from .context import ServiceContext, context_of, get_context
from .problems import PROBLEM_JSON, Problem, payweave_error_response

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
#: a webhook path the express lane takes (the route's own pattern for both names)
_LANE_PATH = re.compile(rf"/webhooks/({_NAME})/({_NAME})")


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


async def accept(context: ServiceContext, psp: str, account: str, headers: dict[str, str], body: bytes) -> bytes:
    """Verify a webhook, record its events (returns once they are committed) and return the
    answer's JSON body (:class:`WebhookReceipt`). Raises the plugin's verification errors,
    :class:`~payweave.core.engine.psp_events.UnknownPspAccount`, or
    :class:`~payweave.core.engine.psp_inbox.WebhookNotRecorded`."""
    events = context.events
    incoming = WebhookRequest(headers=headers, body=body, received_at=context.engine.clock.now())
    # an account of the settings is known without a query; any other one is looked up in the store
    known = events.configured_account(psp, account) or await run_in_threadpool(events.known_account, psp, account)
    # the plugin's check is CPU only (HMAC, JSON): on the event loop, no thread hop
    parsed = events.verify(psp, account, incoming, known=known)
    outcomes = await context.inbox.receive(psp, account, parsed, incoming.received_at)
    # serialized here, once (the route's response_model documents it; no second validation)
    return WebhookReceipt(received=len(outcomes), events=outcomes).model_dump_json().encode()


@router.post(
    "/{psp}/{account}",
    response_model=WebhookReceipt,
    summary="Receive a PSP webhook (verified by the PSP plugin's signature check)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def receive_webhook(
    request: Request,
    psp: Annotated[str, Path(pattern=f"^{_NAME}$", description="The PSP plugin, e.g. psp_mock.")],
    account: Annotated[str, Path(pattern=f"^{_NAME}$", description="The plugin account, e.g. default.")],
) -> Response:
    body = await request.body()
    answer = await accept(get_context(request), psp, account, dict(request.headers.items()), body)
    return Response(answer, media_type="application/json")


#: the route as the request metrics name it (``scope["route"]``, as the router would set it)
ROUTE = next(r for r in router.routes if getattr(r, "endpoint", None) is receive_webhook)
_JSON_HEADERS = [(b"content-type", b"application/json")]


class WebhookLane:
    """ASGI middleware: ``POST /webhooks/{psp}/{account}`` straight to :func:`accept` (see the
    module docstring); every other request goes on to ``app``. Install it inside the request
    context and body-size middlewares, so webhooks get the request id, the request log and
    metrics, and the body limit like any other request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        match = _LANE_PATH.fullmatch(path)
        if match is None:
            await self.app(scope, receive, send)
            return
        psp, account = match.groups()
        scope["route"], scope["path_params"] = ROUTE, {"psp": psp, "account": account}
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the PSP hung up before its body arrived: nothing to record, nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            answer = await accept(context_of(scope["app"]), psp, account, headers, b"".join(chunks))
        except PayweaveError as exc:
            await payweave_error_response(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


__all__ = ["ROUTE", "WebhookLane", "accept", "receive_webhook", "router"]

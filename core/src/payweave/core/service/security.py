"""Authentication (API keys) and idempotent POSTs for the BC-facing API.

Every POST accepts an ``Idempotency-Key`` header (a BC extension retries on timeouts): the first
answer (a result or a refusal) is stored with a fingerprint of the request, and a repeat with
the same key and the same request gets that answer again, marked ``Idempotent-Replayed: true``,
without doing the work twice. A repeat while the first is still running answers 409 (retry
shortly); the same key with a different request answers 422. Answers that say "try again"
(5xx, retryable refusals) are not stored, so the retry does the work; the engine's own request
ids (derived from the key) make that retry finish the first attempt instead of repeating it.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from structlog.contextvars import bind_contextvars

from payweave.core.errors import CoreError
from payweave.core.metrics import OPERATIONS, labelled
from payweave.core.store.service_models import IdempotentRequestRow
from payweave.hooks.errors import PayweaveError

from .apikeys import ApiKeys, Principal
from .context import ServiceContext, get_context
from .problems import problem_response

_bearer = HTTPBearer(auto_error=False, description="An API key `pwk_<id>_<secret>` (see `payweave keys create`).")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, as a header.")

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,150}$")
#: An in-progress record older than this belongs to a request that died; a repeat takes over.
STALE_AFTER = timedelta(minutes=5)


class IdempotencyKeyReused(CoreError):
    code = "idempotency_key_reused"
    http_status = 422


class IdempotencyKeyInProgress(CoreError):
    code = "idempotency_key_in_progress"
    http_status = 409
    retryable = True

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = timedelta(seconds=1)


class InvalidIdempotencyKey(CoreError):
    code = "invalid_idempotency_key"
    http_status = 422


def _unauthorized(detail: str) -> StarletteHTTPException:
    return StarletteHTTPException(401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="payweave"'})


def api_keys(context: ServiceContext) -> ApiKeys:
    return ApiKeys(context.engine.store, context.settings.api_key_pepper.get_secret_value(), clock=context.engine.clock)


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The API key's principal; 401 without a valid, unrevoked key."""
    context = get_context(request)
    presented = bearer.credentials if bearer is not None else header
    if not presented:
        raise _unauthorized("An API key is required (Authorization: Bearer pwk_...).")
    found = await run_in_threadpool(api_keys(context).authenticate, presented)
    if found is None:
        raise _unauthorized("The API key is not valid or was revoked.")
    bind_contextvars(company=found.company_id, api_key=found.key_id)
    return found


Caller = Annotated[Principal, Depends(principal)]
Context = Annotated[ServiceContext, Depends(get_context)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat a POST safely: the same key and request get the first answer again, without the work "
        "being done twice (1-150 visible ASCII characters).",
    ),
]


def fingerprint(method: str, path: str, payload: Any) -> str:
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    text = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _json(result: Any, status: int) -> JSONResponse:
    if isinstance(result, BaseModel):
        content = result.model_dump(mode="json")
    elif isinstance(result, list):
        content = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in result]
    else:
        content = result
    return JSONResponse(content, status_code=status)


async def run_operation(
    request: Request,
    context: ServiceContext,
    caller: Principal,
    idempotency_key: str | None,
    payload: Any,
    work: Callable[[str | None], Any],
    *,
    operation: str,
    status_code: int = 200,
) -> Response:
    """Run ``work(request_id)`` (sync, in a thread) at most once per idempotency key."""
    if idempotency_key is None:
        return await _count(operation, lambda: _json_call(work, None, status_code))
    if not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise InvalidIdempotencyKey("The Idempotency-Key must be 1 to 150 visible ASCII characters.")
    store = context.engine.store
    clock = context.engine.clock
    company = caller.company_id
    digest = fingerprint(request.method, request.url.path, payload)

    def claim() -> Response | None:
        for _ in range(3):
            with store.transaction() as s:
                row = s.get(IdempotentRequestRow, (company, idempotency_key))
                now = clock.now()
                if row is not None:
                    if row.fingerprint != digest:
                        raise IdempotencyKeyReused(
                            "This Idempotency-Key was used for a different request; use a new key for a new request.",
                            details={"path": row.path},
                        )
                    if row.status == "done":
                        response = Response(row.response_body or "", status_code=row.response_status or 200,
                                            media_type=row.response_type or "application/json")
                        response.headers["Idempotent-Replayed"] = "true"
                        return response
                    if now - row.created_at < STALE_AFTER:
                        raise IdempotencyKeyInProgress(
                            "A request with this Idempotency-Key is still being processed; repeat it in a moment.")
                    row.created_at = now  # the first request died: take over
                    return None
                try:
                    with s.begin_nested():
                        s.add(IdempotentRequestRow(company_id=company, key=idempotency_key, fingerprint=digest,
                                                   method=request.method, path=request.url.path[:500], status="in_progress",
                                                   created_at=now))
                        s.flush()
                except IntegrityError:
                    continue
                return None
        raise IdempotencyKeyInProgress("A request with this Idempotency-Key is still being processed; repeat it in a moment.")

    replay = await run_in_threadpool(claim)
    if replay is not None:
        return replay

    def finish(response: Response | None) -> None:
        with store.transaction() as s:
            row = s.get(IdempotentRequestRow, (company, idempotency_key))
            if row is None:
                return
            if response is None:
                s.execute(delete(IdempotentRequestRow).where(IdempotentRequestRow.company_id == company,
                                                             IdempotentRequestRow.key == idempotency_key))
                return
            row.status = "done"
            row.response_status = response.status_code
            row.response_body = bytes(response.body).decode()
            row.response_type = response.media_type
            row.completed_at = clock.now()

    request_id = f"idem:{idempotency_key}"
    try:
        response = await _count(operation, lambda: _json_call(work, request_id, status_code))
    except PayweaveError as exc:
        if exc.retryable or exc.http_status >= 500:
            await run_in_threadpool(finish, None)
            raise
        refusal = problem_response(exc.http_status, exc.code, exc.message, exc.details)
        await run_in_threadpool(finish, refusal)
        return refusal
    except BaseException:
        await run_in_threadpool(finish, None)
        raise
    await run_in_threadpool(finish, response)
    return response


def _json_call(work: Callable[[str | None], Any], request_id: str | None, status_code: int) -> JSONResponse:
    return _json(work(request_id), status_code)


async def _count(operation: str, call: Callable[[], JSONResponse]) -> JSONResponse:
    try:
        response = await run_in_threadpool(call)
    except PayweaveError as exc:
        labelled(OPERATIONS, operation, exc.code).inc()
        raise
    labelled(OPERATIONS, operation, "ok").inc()
    return response


__all__ = [
    "Caller",
    "Context",
    "IdempotencyKey",
    "IdempotencyKeyInProgress",
    "IdempotencyKeyReused",
    "InvalidIdempotencyKey",
    "fingerprint",
    "principal",
    "run_operation",
]

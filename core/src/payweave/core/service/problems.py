"""RFC 9457 problem details: every refusal becomes a 4xx with a stable code and a sentence.

``{"type": "urn:payweave:problem:<code>", "title": ..., "status": 422, "detail": "<sentence>",
"code": "<code>", "details": {...}, "request_id": "..."}`` with ``application/problem+json``.
Validation errors never echo the submitted values (they may hold secrets).
"""
from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from payweave.hooks.errors import PayweaveError

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="urn:payweave:problem:<code>")
    title: str
    status: int
    detail: str = Field(description="A sentence a user understands.")
    code: str = Field(description="Stable machine-readable code.")
    details: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None


_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Request refused",
    429: "Too many requests",
    500: "Internal error",
    502: "Upstream error",
    503: "Temporarily unavailable",
}


def problem_response(status: int, code: str, detail: str, details: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    body = Problem(
        type=f"urn:payweave:problem:{code}",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        details=details or {},
        request_id=request_id,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(400, "malformed_json", "The request body is not valid JSON.")
    cleaned = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in errors]
    first = cleaned[0] if cleaned else {"field": "request", "message": "invalid"}
    detail = f"{first['field']}: {first['message']}"
    if len(cleaned) > 1:
        detail += f" (and {len(cleaned) - 1} more problem{'s' if len(cleaned) > 2 else ''})"
    return problem_response(422, "invalid_request", detail, {"errors": cleaned[:20]})


def payweave_error_response(exc: PayweaveError) -> JSONResponse:
    """The problem document of a typed error (its status, stable code and sentence; a
    ``Retry-After`` when the error names one); 5xx are logged by code."""
    status = exc.http_status
    headers = None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = {"Retry-After": str(max(1, int(retry_after.total_seconds())))}
    if status >= 500:
        structlog.get_logger("payweave").error("request.failed", code=exc.code, error=exc.message)
    return problem_response(status, exc.code, exc.message, exc.details, headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(PayweaveError)
    async def _payweave_error(request: Request, exc: PayweaveError) -> JSONResponse:
        return payweave_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        if exc.status_code == 405:
            detail = "This method is not allowed here."
        return problem_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))


def internal_error_response() -> JSONResponse:
    return problem_response(
        500, "internal_error", "payweave hit an internal error; nothing was changed by this request."
    )

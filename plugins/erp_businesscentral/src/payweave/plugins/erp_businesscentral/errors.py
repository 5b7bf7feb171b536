"""BC error bodies -> typed errors.

Every error BC (or Entra ID) returns becomes a :class:`BCError` that *is also* the contract's
typed error (``RemoteNotFound``, ``ConcurrencyConflict``...), so the core handles it without
knowing BC, while callers here can read BC's own ``bc_code`` and message.

BC's body: ``{"error": {"code": "<Code>", "message": "<text>  CorrelationId:  <guid>."}}``.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from payweave.hooks.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    InvalidRequest,
    PluginError,
    RemoteNotFound,
    TemporarilyUnavailable,
)

from . import bcjson

_CORRELATION_RE = re.compile(r"\s*CorrelationId:\s*([0-9a-fA-F-]{36})\.?\s*$")


class BCError(PluginError):
    """An error answered by Business Central (or its Entra ID token endpoint).

    :param status: the HTTP status (None when there was no response).
    :param bc_code: BC's error code (``Request_EntityChanged``, ``Application_DialogException``...).
    :param bc_message: BC's message without the CorrelationId suffix.
    :param correlation_id: BC's CorrelationId, for Microsoft support.
    """

    def __init__(self, message: str, *, status: int | None = None, bc_code: str = "", bc_message: str = "",
                 correlation_id: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.bc_code = bc_code
        self.bc_message = bc_message or message
        self.correlation_id = correlation_id
        if status is not None:
            self.details.setdefault("http_status", status)
        if bc_code:
            self.details.setdefault("bc_code", bc_code)
        if correlation_id:
            self.details.setdefault("correlation_id", correlation_id)


class BCAuthenticationError(BCError, AuthenticationFailed):
    """Entra ID refused the client credentials, or BC refused the token (401)."""


class BCPermissionError(BCError, AuthenticationFailed):
    """403: the app is not registered in BC or lacks permission sets."""


class BCNotFound(BCError, RemoteNotFound):
    """404: no such company, entity set or record."""


class BCConcurrencyError(BCError, ConcurrencyConflict):
    """``Request_EntityChanged``: the record changed since its ETag was read (409/412)."""


class BCMissingETag(BCError, InvalidRequest):
    """``BadRequest_InvalidToken``: If-Match missing or malformed (a client bug)."""


class BCRequestError(BCError, InvalidRequest):
    """Any other refusal (400/405/413/...): BC's business rule or request validation."""


class BCUnavailable(BCError, TemporarilyUnavailable):
    """429 / 5xx / transport failure that outlasted the bounded retries."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class BCAmbiguousWrite(BCUnavailable):
    """A write whose outcome is unknown (the connection broke or timed out after sending).
    Never blindly repeated: the write-back helpers re-read BC to find out what happened."""


def split_message(message: str) -> tuple[str, str | None]:
    m = _CORRELATION_RE.search(message)
    if not m:
        return message.strip(), None
    return message[: m.start()].strip(), m.group(1)


def parse_error_body(response: httpx.Response) -> tuple[str, str, str | None]:
    """(code, message, correlation id) from a BC error response; tolerant of odd bodies."""
    try:
        body = bcjson.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        text, cid = split_message(str(err.get("message") or ""))
        return str(err.get("code") or ""), text, cid
    text = response.text.strip()[:300] if response.content else ""
    return "", text or f"HTTP {response.status_code}", None


def error_from_response(response: httpx.Response, *, retry_after: float | None = None) -> BCError:
    status = response.status_code
    code, text, cid = parse_error_body(response)
    where = f"{response.request.method} {_entity_path(response.request.url)}"
    message = f"Business Central refused {where}: {text}" if text else f"Business Central answered {status} to {where}."
    kw: dict[str, Any] = {"status": status, "bc_code": code, "bc_message": text, "correlation_id": cid}
    if code == "Request_EntityChanged" or status == 412:
        return BCConcurrencyError(message, **kw)
    if code == "BadRequest_InvalidToken":
        return BCMissingETag(message, **kw)
    if status == 401:
        return BCAuthenticationError(message, **kw)
    if status == 403:
        return BCPermissionError(message, **kw)
    if status == 404:
        return BCNotFound(message, **kw)
    if status in (408, 429) or status >= 500:
        after = timedelta(seconds=retry_after) if retry_after is not None else None
        return BCUnavailable(message, retry_after=after, **kw)
    return BCRequestError(message, **kw)


def token_error_from_response(response: httpx.Response) -> BCError:
    """Entra ID's OAuth error body: ``{"error": "invalid_client", "error_description": "AADSTS..."}``."""
    try:
        body = bcjson.loads(response.content)
    except ValueError:
        body = {}
    error = str(body.get("error", "")) if isinstance(body, dict) else ""
    description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
    first = description.splitlines()[0] if description else f"HTTP {response.status_code}"
    message = f"Entra ID refused the client credentials ({error or response.status_code}): {first}"
    if response.status_code in (429,) or response.status_code >= 500:
        return BCUnavailable(message, status=response.status_code, bc_code=error, bc_message=first)
    return BCAuthenticationError(message, status=response.status_code, bc_code=error, bc_message=first)


def _entity_path(url: httpx.URL) -> str:
    """The part of a BC URL after the API root (no host, tenant or query) for messages."""
    path = url.path
    for marker in ("/api/v2.0/", "/api/payweave/payments/v1.0/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path

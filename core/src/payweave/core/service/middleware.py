"""ASGI middleware: request ids bound into structlog, body size limit, request metrics."""
from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from payweave.core.logging import enabled_for
from payweave.core.metrics import HTTP_REQUESTS, labelled

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContextMiddleware:
    """Bind ``request_id`` (from ``X-Request-Id`` when sane, else new) for the request's logs,
    echo it in the response, and count the request by route template."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        # a random id, not a secret: no os.urandom (a system call per request, dropping the GIL)
        request_id = incoming if _SAFE_ID.match(incoming) else f"{random.getrandbits(128):032x}"
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message = {**message, "headers": [*(message.get("headers") or ()), id_header]}
            await send(message)

        tokens = bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Unexpected: log the type (never the message: it may carry data) and answer 500.
            structlog.get_logger("payweave.http").error(
                "request.crashed", error_type=type(exc).__name__, route=getattr(scope.get("route"), "path", None)
            )
            if started_response:
                raise
            from .problems import internal_error_response

            response = internal_error_response()
            await send_with_id({"type": "http.response.start", "status": 500, "headers": response.raw_headers})
            await send_with_id({"type": "http.response.body", "body": response.body})
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labelled(HTTP_REQUESTS, scope.get("method", "?"), template, str(status)).inc()
            if enabled_for(logging.DEBUG):  # built only when written: this runs for every request
                structlog.get_logger("payweave.http").debug(
                    "http.request", method=scope.get("method"), route=template, status=status,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                )
            reset_contextvars(**tokens)


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (by Content-Length, and while streaming)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                await self._reject(send, 400, "bad_content_length", "The Content-Length header is not a number.")
                return
            if too_big:
                await self._reject(send, 413, "body_too_large", f"The request body is larger than {self.max_bytes} bytes.")
                return
        # Buffer the body (bounded by max_bytes), then replay it to the app: a body that grows
        # past the limit while streaming is refused before the app sees any of it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send, 413, "body_too_large", f"The request body is larger than {self.max_bytes} bytes.")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Any, status: int, code: str, detail: str) -> None:
        from .problems import problem_response

        response = problem_response(status, code, detail)
        await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


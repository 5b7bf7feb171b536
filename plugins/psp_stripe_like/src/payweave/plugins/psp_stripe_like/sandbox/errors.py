"""Stripe error objects raised inside the sandbox and rendered as ``{"error": {...}}``."""
from __future__ import annotations

from typing import Any

DOC_BASE = "https://docs.stripe.com/error-codes"


class StripeError(Exception):
    """An API error with Stripe's shape.

    ``stored`` says whether an idempotent request that fails this way keeps the response
    (True once execution began: declines, state conflicts) or leaves the key free
    (False: parameter validation, unknown ids, authentication).
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.param = param
        self.stored = stored
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"{DOC_BASE}#{self.code.replace('_', '-')}"
        if self.decline_code:
            error["decline_code"] = self.decline_code
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None, stored: bool = False) -> StripeError:
    """400 invalid_request_error (not stored by default: a validation failure)."""
    return StripeError(400, "invalid_request_error", message, param=param, code=code, stored=stored)


def state_error(message: str, *, code: str = "payment_intent_unexpected_state", **extra: Any) -> StripeError:
    """400 for an operation that began executing and found the object in the wrong state."""
    return StripeError(400, "invalid_request_error", message, code=code, stored=True, **extra)


def missing(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    """404 for an unknown id in the path, 400 for an unknown id given as a parameter."""
    status = 400 if param else 404
    return StripeError(
        status, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing", param=param, stored=False
    )

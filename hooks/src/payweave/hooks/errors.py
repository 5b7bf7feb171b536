"""Typed errors: every refusal carries a stable ``code`` and a sentence a user understands.

Plugins raise the subclasses of :class:`PluginError` defined here; the core maps them to its
own behaviour (retry, park, 4xx answer). Never raise a bare ``Exception`` from a hook: the
conformance suite fails a plugin that does.

Stable codes are part of the contract: clients (a BC extension, CI scripts) may match on them.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any


class PayweaveError(Exception):
    """Base of every payweave error.

    :param message: one sentence for a person (no secrets, no stack traces).
    :param code: stable, machine-readable code (``snake_case``); subclasses set a default.
    :param details: JSON-serialisable context (field names, amounts as strings).
    """

    code: str = "payweave_error"
    #: HTTP status the service answers with when this error reaches an API caller.
    http_status: int = 400
    #: True when the same request may succeed later (the core retries with the same idempotency key).
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


# --------------------------------------------------------------------------------------------
# Errors a plugin raises (PSP or ERP)
# --------------------------------------------------------------------------------------------
class PluginError(PayweaveError):
    """Base for errors raised by plugins."""

    code = "plugin_error"
    http_status = 502


class PaymentDeclined(PluginError):
    """The PSP refused the payment for a business reason (card declined, insufficient funds).

    Not retryable with the same data. ``decline_code`` is the PSP's own reason code.
    """

    code = "payment_declined"
    http_status = 402

    def __init__(self, message: str, *, decline_code: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.decline_code = decline_code
        if decline_code:
            self.details.setdefault("decline_code", decline_code)


class TemporarilyUnavailable(PluginError):
    """A transient failure (timeout, network error, 429, 5xx). The core retries the *same*
    request with the *same* idempotency key, after ``retry_after`` if the remote said so."""

    code = "temporarily_unavailable"
    http_status = 503
    retryable = True

    def __init__(self, message: str, *, retry_after: timedelta | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class InvalidRequest(PluginError):
    """The remote side rejected the request as malformed or impossible in the current state
    (unknown reference, amount above what remains, wrong currency). Not retryable."""

    code = "invalid_request"
    http_status = 422


class NotSupported(PluginError):
    """The operation is outside the plugin's declared capabilities.

    A plugin must raise this (before any network call) for every operation its capability
    model excludes; the core also refuses such operations itself before calling the plugin.
    """

    code = "not_supported"
    http_status = 422


class AuthenticationFailed(PluginError):
    """Credentials were refused by the remote system (wrong key, expired secret)."""

    code = "authentication_failed"
    http_status = 502


class WebhookVerificationFailed(PluginError):
    """An incoming webhook failed signature verification (bad, missing, or stale signature)."""

    code = "webhook_signature_invalid"
    http_status = 400


class RemoteNotFound(PluginError):
    """The remote system has no record with that id."""

    code = "remote_not_found"
    http_status = 404


class ConcurrencyConflict(PluginError):
    """The remote record changed since it was read (ETag mismatch). Re-read and retry."""

    code = "concurrency_conflict"
    http_status = 409


class ConfigurationError(PayweaveError):
    """Settings are missing or invalid (names the setting, never its secret value)."""

    code = "configuration_error"
    http_status = 500

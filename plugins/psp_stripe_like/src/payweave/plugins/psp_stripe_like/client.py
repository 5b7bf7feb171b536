"""The HTTP client for a Stripe-shaped API: form-encoded requests, bounded retries with the
same Idempotency-Key (the one retry policy, :mod:`payweave.hooks.retry`), and Stripe error
objects mapped to the contract's typed errors.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
import structlog

from payweave.hooks.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PaymentDeclined,
    PluginError,
    RemoteNotFound,
    TemporarilyUnavailable,
)
from payweave.hooks.retry import retry_after_seconds, send_with_retries

from . import formcodec
from .version import __version__

log = structlog.get_logger("payweave.plugins.psp_stripe_like")

MAX_IDEMPOTENCY_KEY = 255


def derive_key(key: str, step: str) -> str:
    """A deterministic sub-key for the ``step``-th call of one hook invocation (<= 255 chars)."""
    candidate = f"{key}:{step}"
    if len(candidate) <= MAX_IDEMPOTENCY_KEY:
        return candidate
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{step}"[:MAX_IDEMPOTENCY_KEY]


def _should_retry(response: httpx.Response) -> bool | None:
    """Stripe's rule on top of the shared policy: ``Stripe-Should-Retry`` decides when present,
    409 (a concurrent request holds the idempotency key, or a lock conflict) and a 400 with
    code ``rate_limit`` are retried; otherwise the shared status rule applies."""
    advice = response.headers.get("stripe-should-retry")
    if advice == "true":
        return True
    if advice == "false":
        return False
    if response.status_code == 409:
        return True
    if response.status_code == 400:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            return None
        if isinstance(error, dict) and error.get("code") in ("rate_limit", "lock_timeout"):
            return True  # Stripe also signals rate limiting as a 400 with code rate_limit
    return None


class StripeApiError:
    """The parsed ``error`` object of a failed response (kept for mapping and details)."""

    def __init__(self, status: int, body: Any):
        error = body.get("error") if isinstance(body, dict) else None
        self.status = status
        self.error: dict[str, Any] = error if isinstance(error, dict) else {}
        self.type = str(self.error.get("type") or "")
        self.code = self.error.get("code")
        self.decline_code = self.error.get("decline_code")
        self.param = self.error.get("param")
        self.message = str(self.error.get("message") or f"The PSP answered HTTP {status}.")

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"http_status": self.status, "stripe_type": self.type}
        for key in ("code", "decline_code", "param"):
            if self.error.get(key):
                details[key] = self.error[key]
        pi = self.error.get("payment_intent")
        if isinstance(pi, dict):
            details["payment_intent"] = pi.get("id")
            details["payment_intent_status"] = pi.get("status")
        return details

    def to_plugin_error(self, retry_after: float | None) -> PluginError:
        details = self.details()
        if self.status == 402 or self.type == "card_error":
            return PaymentDeclined(self.message, decline_code=self.decline_code or self.code, details=details)
        if self.status in (401, 403):
            return AuthenticationFailed(f"The PSP refused the API key: {self.message}", details=details)
        if self.status == 404 or self.code == "resource_missing":
            return RemoteNotFound(self.message, details=details)
        if self.type == "idempotency_error":
            return InvalidRequest(self.message, code="idempotency_key_reused", details=details)
        if self.status in (409, 424, 429) or self.status >= 500 or self.code in ("rate_limit", "lock_timeout"):
            return TemporarilyUnavailable(
                f"The PSP is temporarily unavailable (HTTP {self.status}): {self.message}",
                retry_after=timedelta(seconds=retry_after) if retry_after is not None else None,
                details=details,
            )
        return InvalidRequest(self.message, details=details)


class StripeClient:
    """One account's connection. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        stripe_version: str | None,
        connect_timeout: float,
        read_timeout: float,
        policy: Any,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.policy = policy
        headers = {"User-Agent": f"payweave-psp-stripe-like/{__version__}", "Accept": "application/json"}
        if stripe_version:
            headers["Stripe-Version"] = stripe_version
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"StripeClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Send one API call (retried on transport errors, 409, 429 and 5xx with the same key)
        and return the JSON object; raise the contract's typed error otherwise."""
        params = params or {}
        headers = {"Authorization": f"Bearer {self._api_key}"}
        body: str | None = None
        query: str | None = None
        if method == "POST":
            # Every POST carries a key, as stripe-python does, so that retries never repeat an effect.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = formcodec.encode(params)
        elif params:
            query = formcodec.encode(params)
        url = path + (f"?{query}" if query else "")

        def send() -> httpx.Response:
            return self._http.request(method, url, content=body, headers=headers)

        def on_retry(attempt: int, wait: float, why: str) -> None:
            log.warning("stripe.retry", method=method, path=path, attempt=attempt, wait=round(wait, 3), reason=why,
                        idempotency_key=headers.get("Idempotency-Key"))  # fmt: skip

        response = send_with_retries(
            send, policy=self.policy, should_retry=_should_retry, on_retry=on_retry, what=f"the PSP ({method} {path})"
        )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if 200 <= response.status_code < 300:
            if not isinstance(payload, dict):
                raise TemporarilyUnavailable(
                    f"The PSP answered {method} {path} with a body that is not a JSON object.",
                    details={"http_status": response.status_code},
                )
            return payload
        raise StripeApiError(response.status_code, payload).to_plugin_error(retry_after_seconds(response))


_clients: dict[tuple[Any, ...], StripeClient] = {}
_clients_lock = threading.Lock()


def client_for(settings: Any) -> StripeClient:
    """A cached client per distinct settings (so connections are reused across hook calls)."""
    api_key = settings.api_key.get_secret_value()
    key = (
        settings.base_url,
        hashlib.sha256(api_key.encode()).hexdigest(),
        settings.stripe_version,
        settings.connect_timeout_seconds,
        settings.read_timeout_seconds,
        settings.retry_policy(),
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = StripeClient(
                settings.base_url,
                api_key,
                stripe_version=settings.stripe_version,
                connect_timeout=settings.connect_timeout_seconds,
                read_timeout=settings.read_timeout_seconds,
                policy=settings.retry_policy(),
            )
            _clients[key] = client
        return client


def close_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()

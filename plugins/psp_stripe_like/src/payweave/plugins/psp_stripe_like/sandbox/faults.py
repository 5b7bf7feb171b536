"""Fault injection for tests (sandbox-only, driven through ``/_sandbox/faults``).

Modes, each for the next ``count`` matching API requests (``method`` and the glob ``path``,
e.g. ``/v1/payment_intents/*/capture``):

* ``error``: answer ``status`` (500, 502, 503, 504 or 429) *before* executing anything; nothing
  is stored under the idempotency key, so a retry with the same key executes normally.
* ``delay``: execute (the effect is applied and stored), then hold the response for
  ``delay_seconds`` - past a client's read timeout, the client sees a timeout for a request
  that succeeded.
* ``drop``: execute, then never answer: hold the connection until the client gives up
  (bounded by the ``max_fault_hold_seconds`` setting).
* ``slow``: hold ``delay_seconds`` *before* executing, with the idempotency key in flight
  (a concurrent request with the same key gets 409 ``idempotency_key_in_use``).
"""
from __future__ import annotations

import fnmatch
import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .errors import StripeError, invalid

MODES = ("error", "delay", "drop", "slow")
ERROR_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class Fault:
    id: int
    mode: str
    count: int = 1
    status: int = 500
    delay_seconds: float = 0.0
    path: str = "/v1/*"
    method: str | None = None
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(path, self.path)

    def error(self) -> StripeError:
        headers = {"Stripe-Should-Retry": "true"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.status == 429:
            return StripeError(
                429, "invalid_request_error", "Too many requests hit the API too quickly (injected by the sandbox).",
                code="rate_limit", stored=False, headers=headers,
            )  # fmt: skip
        return StripeError(
            self.status, "api_error", "An unknown error occurred (injected by the sandbox).", stored=False, headers=headers
        )


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        unknown = set(spec) - {"mode", "count", "status", "delay_seconds", "path", "method", "retry_after"}
        if unknown:
            raise invalid(f"Unknown fault fields: {', '.join(sorted(unknown))}")
        mode = spec.get("mode", "error")
        if mode not in MODES:
            raise invalid(f"mode must be one of {', '.join(MODES)}", param="mode")
        try:
            count = int(spec.get("count", 1))
            status = int(spec.get("status", 500))
            delay = float(spec.get("delay_seconds", 0.0))
            retry_after = None if spec.get("retry_after") is None else int(spec["retry_after"])
        except (TypeError, ValueError) as exc:
            raise invalid(f"Invalid fault: {exc}") from None
        if count < 1:
            raise invalid("count must be at least 1", param="count")
        if mode == "error" and status not in ERROR_STATUSES:
            raise invalid(f"status must be one of {ERROR_STATUSES}", param="status")
        if delay < 0:
            raise invalid("delay_seconds must not be negative", param="delay_seconds")
        method = spec.get("method")
        fault = Fault(
            id=next(self._ids),
            mode=mode,
            count=count,
            status=status,
            delay_seconds=delay,
            path=str(spec.get("path") or "/v1/*"),
            method=method.upper() if isinstance(method, str) else None,
            retry_after=retry_after,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return Fault(**{**asdict(fault), "count": 1})
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

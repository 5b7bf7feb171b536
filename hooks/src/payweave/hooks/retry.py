"""The one HTTP retry policy of payweave (plugins and core use it; don't write a second).

What is retried: transport errors (connect/read timeouts, resets) and the statuses
408, 429, 500, 502, 503, 504. A ``Retry-After`` header (seconds or HTTP date) is honoured,
capped by ``max_retry_after``; otherwise the delay grows exponentially with full jitter.
Retries are bounded by ``max_attempts``. The caller must send the *same* request (same
idempotency key) on every attempt; :func:`send_with_retries` guarantees that by calling the
same ``send`` callable.

The same :meth:`RetryPolicy.delay` backs off the core's job retries.
"""
from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import BaseModel, ConfigDict, Field

from .errors import TemporarilyUnavailable

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(4, ge=1, le=20, description="Total attempts including the first.")
    base_delay: float = Field(0.25, ge=0, description="Seconds before the first retry (before jitter).")
    max_delay: float = Field(8.0, ge=0, description="Upper bound of one exponential delay.")
    max_retry_after: float = Field(60.0, ge=0, description="Longest Retry-After honoured; longer gives up.")
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)


DEFAULT_POLICY = RetryPolicy()


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP-date) into seconds, or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def is_retryable_response(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    should_retry: Callable[[httpx.Response], bool | None] | None = None,
    on_retry: Callable[[int, float, str], None] | None = None,
    what: str = "the remote service",
) -> httpx.Response:
    """Call ``send`` until it returns a non-retryable response or attempts run out.

    Returns the last response (retryable or not; the caller maps statuses to errors).
    Raises :class:`~payweave.hooks.errors.TemporarilyUnavailable` when every attempt failed
    with a transport error, or when ``Retry-After`` asks for longer than ``max_retry_after``.
    ``should_retry(response)`` may override the status rule (True/False), None keeps it.
    """
    last_error: Exception | None = None
    for attempt in range(1, policy.max_attempts + 1):
        try:
            response = send()
        except httpx.TransportError as exc:  # timeouts, connection errors
            last_error = exc
            if attempt == policy.max_attempts:
                break
            wait = policy.delay(attempt)
            if on_retry:
                on_retry(attempt, wait, type(exc).__name__)
            sleep(wait)
            continue
        verdict = should_retry(response) if should_retry else None
        retry = is_retryable_response(response) if verdict is None else verdict
        if not retry or attempt == policy.max_attempts:
            return response
        after = retry_after_seconds(response)
        if after is not None and after > policy.max_retry_after:
            raise TemporarilyUnavailable(
                f"{what} asked to retry after {after:.0f} s.", retry_after=timedelta(seconds=after)
            )
        wait = policy.delay(attempt, after)
        if on_retry:
            on_retry(attempt, wait, f"HTTP {response.status_code}")
        response.close()
        sleep(wait)
    raise TemporarilyUnavailable(
        f"{what} did not answer after {policy.max_attempts} attempts ({type(last_error).__name__}).",
        details={"attempts": policy.max_attempts},
    )

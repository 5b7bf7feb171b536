"""Signed webhook delivery with bounded retries.

Each event goes to every enabled endpoint whose ``enabled_events`` match, as
``POST <url>`` with the raw JSON body and
``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. The signature time
is the real wall-clock time (not the sandbox clock), so receivers with a tolerance window
accept fresh deliveries even after a test moved the sandbox clock by days.

Any non-2xx answer or transport error is a failure; the delivery is retried after
``webhook_backoff_seconds * 2**(n-1)`` (capped) until ``webhook_max_attempts`` attempts.
In ``background`` mode a daemon thread delivers; ``flush()`` delivers everything pending now
(both modes) and waits for deliveries already in progress.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .settings import SandboxSettings

log = logging.getLogger(__name__)


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature of ``payload`` at ``timestamp`` (lowercase hex)."""
    message = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secrets: list[str], timestamp: int) -> str:
    """A ``Stripe-Signature`` header value; several secrets give several ``v1`` entries."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(payload, s, timestamp)}" for s in secrets)])


@dataclass
class Delivery:
    id: int
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    secret: str
    payload: bytes
    state: str = "pending"  # pending | in_progress | delivered | failed
    attempts: int = 0
    next_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event_id,
            "type": self.event_type,
            "endpoint": self.endpoint_id,
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "history": list(self.history),
        }


class WebhookDispatcher:
    def __init__(self, settings: SandboxSettings, on_delivered: Callable[[str], None]):
        self.settings = settings
        self._on_delivered = on_delivered
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._client = httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)

    # ---------------------------------------------------------------- intake
    def enqueue(self, event: dict[str, Any], targets: list[tuple[str, str, str]]) -> None:
        """Queue ``event`` for each ``(endpoint_id, url, secret)``."""
        payload = json.dumps(event, indent=2).encode()
        with self._cond:
            for endpoint_id, url, secret in targets:
                self._deliveries.append(
                    Delivery(next(self._ids), event["id"], event["type"], endpoint_id, url, secret, payload,
                             next_at=time.monotonic())  # fmt: skip
                )
            if self.settings.webhook_delivery == "background" and not self._stopped:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="stripe-sandbox-webhooks", daemon=True)
                    self._thread.start()
                self._cond.notify_all()

    # ---------------------------------------------------------------- delivery
    def _backoff(self, attempts: int) -> float:
        return min(self.settings.webhook_backoff_seconds * 2 ** (attempts - 1), self.settings.webhook_backoff_max_seconds)

    def _attempt(self, delivery: Delivery) -> None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(delivery.payload, [delivery.secret], timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = self._client.post(delivery.url, content=delivery.payload, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        with self._cond:
            delivery.attempts += 1
            delivery.history.append({"at": time.time(), "status": status, "error": error})
            if ok:
                delivery.state = "delivered"
            elif delivery.attempts >= self.settings.webhook_max_attempts:
                delivery.state = "failed"
                log.warning("webhook %s to %s failed after %d attempts", delivery.event_id, delivery.url, delivery.attempts)
            else:
                delivery.state = "pending"
                delivery.next_at = time.monotonic() + self._backoff(delivery.attempts)
            self._cond.notify_all()
        if ok:
            self._on_delivered(delivery.event_id)

    def _claim(self, *, force: bool) -> list[Delivery]:
        now = time.monotonic()
        due = [d for d in self._deliveries if d.state == "pending" and (force or d.next_at <= now)]
        for delivery in due:
            delivery.state = "in_progress"
        return due

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                due = self._claim(force=False)
                if not due:
                    pending = [d.next_at for d in self._deliveries if d.state == "pending"]
                    timeout = max(min(pending) - time.monotonic(), 0.0) if pending else 1.0
                    self._cond.wait(timeout)
                    continue
            for delivery in due:
                self._attempt(delivery)

    def flush(self, rounds: int = 1) -> dict[str, int]:
        """Attempt every pending delivery now, ``rounds`` times over (failures of one round are
        retried in the next, ignoring backoff); waits for deliveries already in progress."""
        for _ in range(max(rounds, 1)):
            with self._cond:
                while any(d.state == "in_progress" for d in self._deliveries):
                    self._cond.wait(0.05)
                due = self._claim(force=True)
            if not due:
                break
            for delivery in due:
                self._attempt(delivery)
        return self.stats()

    def stats(self) -> dict[str, int]:
        with self._cond:
            counts = {"pending": 0, "in_progress": 0, "delivered": 0, "failed": 0}
            for delivery in self._deliveries:
                counts[delivery.state] += 1
            return counts

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [d.summary() for d in self._deliveries]

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()

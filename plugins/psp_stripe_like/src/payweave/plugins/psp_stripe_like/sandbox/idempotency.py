"""Idempotent requests, as Stripe v1 keeps them.

* The first request with a key that *begins executing* stores its status and body; later
  requests with the same key and the same parameters get that response replayed (even a
  402 or a 500), marked with ``Idempotent-Replayed: true``.
* The same key with different parameters (or another endpoint) -> 400 ``idempotency_error``.
* The same key while the first request still runs -> 409 ``idempotency_key_in_use``.
* A request that fails validation stores nothing, so the key stays usable.
* Keys are scoped to the API key and pruned after ``ttl`` seconds of sandbox time.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from .clock import SandboxClock

MAX_KEY_LENGTH = 255


@dataclass
class IdempotencyRecord:
    fingerprint: str
    created: int
    request_id: str
    done: bool = False
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyStore:
    def __init__(self, clock: SandboxClock, ttl_seconds: int):
        self._clock = clock
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], IdempotencyRecord] = {}

    def begin(
        self, scope: str, key: str, fingerprint: str, request_id: str
    ) -> tuple[Literal["new", "in_flight", "mismatch", "replay"], IdempotencyRecord]:
        now = self._clock.now()
        with self._lock:
            for stale in [k for k, r in self._records.items() if r.done and r.created + self._ttl <= now]:
                del self._records[stale]
            record = self._records.get((scope, key))
            if record is None:
                record = IdempotencyRecord(fingerprint=fingerprint, created=now, request_id=request_id)
                self._records[(scope, key)] = record
                return "new", record
            if not record.done:
                return "in_flight", record
            if record.fingerprint != fingerprint:
                return "mismatch", record
            return "replay", record

    def abandon(self, scope: str, key: str, record: IdempotencyRecord) -> None:
        with self._lock:
            if self._records.get((scope, key)) is record:
                del self._records[(scope, key)]

    def complete(self, record: IdempotencyRecord, status: int, body: bytes, headers: dict[str, str]) -> None:
        with self._lock:
            record.status, record.body, record.headers, record.done = status, body, dict(headers), True

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

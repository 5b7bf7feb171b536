"""The mock PSP's clock: wall time plus an offset, or frozen at a chosen instant.

Reservation and link expiry, webhook timestamps, payout dates and ``processed_at`` all read
this clock, so a test moves the PSP a week ahead with ``ledger.advance(days=7)`` instead of
sleeping.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class MockClock:
    def __init__(self, frozen_at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen: datetime | None = None
        if frozen_at is not None:
            self.freeze(frozen_at)

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward (never backward) by ``delta``."""
        if delta < timedelta(0):
            raise ValueError("the mock PSP's clock only moves forward")
        with self._lock:
            if self._frozen is not None:
                self._frozen += delta
            else:
                self._offset += delta
        return self.now()

    def freeze(self, at: datetime | None = None) -> datetime:
        """Stop the clock at ``at`` (default: the current mock time)."""
        if at is not None and at.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware datetime")
        moment = at if at is not None else self.now()
        with self._lock:
            self._frozen = moment.astimezone(UTC)
        return moment

    def unfreeze(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - datetime.now(UTC)
                self._frozen = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

"""The sandbox's controllable clock.

Everything time-dependent in the sandbox reads this clock: lastModifiedDateTime, token and
subscription expiry, the throttling window, posting dates. By default it follows real time;
``freeze()`` stops it, ``advance()``/``set()`` move it (forwards or to any instant).
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta


class SandboxClock:
    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0  # seconds added to real time while running
        self._frozen_at: float | None = None
        if start is not None:
            self.set(start)
        if frozen:
            self.freeze()

    def time(self) -> float:
        """Epoch seconds."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def now_ms(self) -> int:
        return int(self.time() * 1000)

    def today(self) -> date:
        return self.now().date()

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("the sandbox clock needs an aware datetime")
        target = when.timestamp()
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._offset = target - time.time()

    def advance(self, seconds: float | timedelta) -> None:
        delta = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
            else:
                self._offset += delta

    def freeze(self) -> None:
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = time.time() + self._offset

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

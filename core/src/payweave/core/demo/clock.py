"""The demo's clock: wall time plus an offset that only moves forward.

The engine, the job queue and the ERP sync read it; the demo moves it (together with the PSP's
own clock) so a reservation that expires in a week is captured by the scheduler within seconds.
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class ShiftedClock:
    """Real time plus ``offset``; :meth:`advance` moves it forward (never back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    @property
    def offset(self) -> timedelta:
        with self._lock:
            return self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time does not run backwards")
        with self._lock:
            self._offset += delta
        return self.now()


__all__ = ["ShiftedClock"]

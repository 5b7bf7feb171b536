"""The sandbox clock: real time plus an offset that tests move forward (never backward)."""
from __future__ import annotations

import threading
import time


class SandboxClock:
    def __init__(self, start: int | None = None, *, frozen: bool = False):
        self._lock = threading.Lock()
        real = time.time()
        self._offset = float(start - real) if start is not None else 0.0
        self._frozen_at: float | None = (start if start is not None else real) if frozen else None

    def now(self) -> int:
        """Current sandbox time in unix seconds."""
        with self._lock:
            if self._frozen_at is not None:
                return int(self._frozen_at)
            return int(time.time() + self._offset)

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds
        return self.now()

    def set(self, timestamp: int) -> int:
        current = self.now()
        if timestamp < current:
            raise ValueError(f"the sandbox clock only moves forward (now {current}, asked {timestamp})")
        return self.advance(timestamp - current)

    def freeze(self, frozen: bool) -> int:
        with self._lock:
            if frozen and self._frozen_at is None:
                self._frozen_at = time.time() + self._offset
            elif not frozen and self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None
        return self.now()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

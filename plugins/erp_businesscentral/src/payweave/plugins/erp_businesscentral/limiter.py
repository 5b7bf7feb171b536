"""Client-side limits so BC never has to throttle us (reference §7): at most
``max_concurrent`` requests in flight and at most ``max_requests`` started in any sliding
``window_seconds``. Thread-safe; every HTTP attempt (retries included) takes a slot.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class RateLimiter:
    def __init__(self, *, max_concurrent: int = 5, max_requests: int = 6000, window_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_concurrent < 1 or max_requests < 1 or window_seconds <= 0:
            raise ValueError("limits must be positive")
        self.max_concurrent = max_concurrent
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self._sem = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._started: deque[float] = deque()
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        #: the most requests ever in flight at once, and seconds spent waiting for the window
        self.peak_in_flight = 0
        self.waited_seconds = 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        """Take a slot (for a request whose body is streamed after the call returns: pair it
        with :meth:`release` when the body is read or closed)."""
        self._sem.acquire()
        try:
            self._take_window()
        except BaseException:
            self._sem.release()
            raise
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
        self._sem.release()

    def _take_window(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._started and self._started[0] <= now - self.window_seconds:
                    self._started.popleft()
                if len(self._started) < self.max_requests:
                    self._started.append(now)
                    return
                wait = self._started[0] + self.window_seconds - now
            wait = max(wait, 0.001)
            self.waited_seconds += wait
            self._sleep(wait)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

"""The cyclic garbage collector while sync runs go on.

A sync run makes and drops millions of containers (parsed rows, records, row values), and
CPython's full collections, triggered by how many of them survive a while (a part of 1,000
records lives until its transaction commits), scan the whole heap each time: the process's
own modules and the SQLAlchemy and pydantic structures (over 100,000 objects) included, which
no run makes or frees. That was about a tenth of the initial sync's CPU.

While at least one run goes on in the process, the objects that existed when the first one
started are left out of collections (:func:`gc.freeze`); when the last run ends they are
collected as before (:func:`gc.unfreeze`). Nothing the runs make is kept longer; only cyclic
garbage made before the first run waits until the last one ends. A process whose heap is frozen
already (a preforking server does that) or whose collector is off is left as it is.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_runs = 0
_froze = False


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Leave the objects older than the first running sync out of collections until the last ends."""
    global _runs, _froze
    with _lock:
        if _runs == 0 and gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()
            _froze = True
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _froze:
                gc.unfreeze()
                _froze = False


__all__ = ["heap_frozen"]

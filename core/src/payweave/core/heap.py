"""The cyclic garbage collector and the long-lived heap: one home for :func:`gc.freeze`.

CPython's full collections scan every container the process holds, and are triggered by how
many young containers survived a while. A payweave process holds well over 100,000 long-lived
ones that no request, event or sync run makes or frees (its modules, the SQLAlchemy and pydantic
structures, the FastAPI app), so each full collection rescans them.

* **Sync runs** make and drop millions of containers (parsed rows, records, row values); a part
  of 1,000 records lives until its transaction commits. Full collections were about a tenth of
  the initial sync's CPU. While at least one run goes on in the process, the objects that
  existed when the first one started are left out of collections (:func:`heap_frozen`); when the
  last run ends they are collected as before (:func:`gc.unfreeze`). Nothing the runs make is
  kept longer; only cyclic garbage made before the first run waits until the last one ends.
* **The HTTP service** freezes its heap once it has started (:func:`freeze_started_heap`, after
  the app, the plugins, the store and the warm-up request): what exists then lives as long as
  the process. Every webhook, API request and job leaves young containers that the collector
  still collects; only cyclic garbage among the objects of the start (none after the
  collection that precedes the freeze) would wait for the process to end. Without it, the full
  collections a steady stream of webhooks triggers cost about a fifth of the webhook route's
  CPU.

A process whose heap is frozen already (the service, a preforking server) or whose collector
is off is left as it is by :func:`heap_frozen`.
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


def freeze_started_heap() -> int:
    """A long-running process has started: collect its garbage once, then leave every object
    alive now out of later collections for good. Returns how many objects were frozen (0 when
    the collector is off, or a sync run froze the heap and will give it back: then nothing is
    done)."""
    with _lock:
        if not gc.isenabled() or _froze:
            return 0
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()


__all__ = ["freeze_started_heap", "heap_frozen"]

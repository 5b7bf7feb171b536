"""Sync runs leave the heap that existed before them out of the collector's passes, and give it
back when the last run ends (runs may overlap in threads); a heap frozen by someone else stays so."""
from __future__ import annotations

import gc
import threading

from payweave.core.sync.heap import heap_frozen


def test_frozen_while_runs_go_on_and_thawed_after_the_last() -> None:
    assert gc.get_freeze_count() == 0
    inside = threading.Event()
    leave = threading.Event()

    def other_run() -> None:
        with heap_frozen():
            inside.set()
            leave.wait(10)

    with heap_frozen():
        assert gc.get_freeze_count() > 0
        thread = threading.Thread(target=other_run)
        thread.start()
        assert inside.wait(10)
    assert gc.get_freeze_count() > 0  # the other run still goes on
    leave.set()
    thread.join(10)
    assert gc.get_freeze_count() == 0


def test_garbage_made_during_a_run_is_collected() -> None:
    class Node:
        pass

    with heap_frozen():
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2


def test_a_heap_frozen_by_the_process_stays_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with heap_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()

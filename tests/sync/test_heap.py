"""Sync runs leave the heap that existed before them out of the collector's passes, and give it
back when the last run ends (runs may overlap in threads); a heap frozen by someone else stays so.

The collector is the process's own: each case runs in a fresh interpreter, so no sync run of
another test (a worker thread still finishing) shares it."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


def test_frozen_while_runs_go_on_and_thawed_after_the_last() -> None:
    _run("""
        import gc, threading
        from payweave.core.sync.heap import heap_frozen

        assert gc.get_freeze_count() == 0
        inside, leave = threading.Event(), threading.Event()

        def other_run():
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
    """)


def test_garbage_made_during_a_run_is_collected() -> None:
    _run("""
        import gc
        from payweave.core.sync.heap import heap_frozen

        class Node:
            pass

        with heap_frozen():
            a, b = Node(), Node()
            a.other, b.other = b, a
            del a, b
            assert gc.collect() >= 2
    """)


def test_a_heap_frozen_by_the_process_stays_frozen() -> None:
    _run("""
        import gc
        from payweave.core.sync.heap import heap_frozen

        gc.freeze()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with heap_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    """)

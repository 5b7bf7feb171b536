"""Sync runs leave the heap that existed before them out of the collector's passes, and give it
back when the last run ends (runs may overlap in threads); a heap frozen by someone else stays so.
The HTTP service freezes its heap for good once it has started (payweave.core.heap).

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
        from payweave.core.heap import heap_frozen

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
        from payweave.core.heap import heap_frozen

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
        from payweave.core.heap import heap_frozen

        gc.freeze()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with heap_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    """)


def test_the_service_freezes_its_started_heap_for_good(tmp_path) -> None:
    _run(f"""
        import gc
        from payweave.core.heap import freeze_started_heap, heap_frozen
        from payweave.core.service.context import build_context
        from payweave.core.service.runtime import Runtime
        from payweave.core.settings import PayweaveSettings

        assert gc.get_freeze_count() == 0
        runtime = Runtime(build_context(PayweaveSettings(database_url="sqlite:///{tmp_path / 'pw.db'}", plugins="psp_mock")),
                          job_worker=False).start()
        try:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000, frozen  # the app, the plugins, the store: the process's long-lived heap
            with heap_frozen():  # a sync run in the service leaves the service's freeze alone
                pass
            assert gc.get_freeze_count() > frozen // 2  # (frozen objects may still be freed by their count)

            import weakref

            class Node:
                pass

            a, b = Node(), Node()  # garbage made after the start is still collected
            a.other, b.other = b, a
            gone = weakref.ref(a)
            del a, b
            gc.collect()
            assert gone() is None
        finally:
            runtime.stop()
    """)


def test_no_freeze_with_the_collector_off_or_while_a_sync_run_froze_the_heap() -> None:
    _run("""
        import gc
        from payweave.core.heap import freeze_started_heap, heap_frozen

        gc.disable()
        assert freeze_started_heap() == 0 and gc.get_freeze_count() == 0
        gc.enable()
        with heap_frozen():
            frozen = gc.get_freeze_count()
            assert freeze_started_heap() == 0 and gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == 0  # the run gave the heap back as it would have
        assert freeze_started_heap() > 0
    """)

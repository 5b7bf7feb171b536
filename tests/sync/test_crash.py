"""A crash in the middle of the history: a real ``payweave connect`` process, killed with SIGKILL
while it pages through the history window, then ``payweave sync`` in a new process. The end
state has every BC record exactly once, with every settlement recorded once (no gap, no
duplicate), and the second process took over the dead process's lease at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from payweave.core.store import Store
from payweave.core.sync.models import ErpConnectionRow, ErpSyncCursorRow

PAYWEAVE = str(Path(sys.executable).parent / "payweave")


def _cli(bc, store: Store, *args: str) -> subprocess.Popen:
    env = {**os.environ, **bc.env(), "PAYWEAVE_DATABASE_URL": store.url.render_as_string(hide_password=False),
           "PAYWEAVE_PLUGINS": "erp_businesscentral", "PAYWEAVE_SYNC_PAGE_SIZE": "10", "PAYWEAVE_SYNC_PDFS": "none",
           "PAYWEAVE_LOG_LEVEL": "WARNING", "PAYWEAVE_CONFIG": os.devnull}
    return subprocess.Popen([PAYWEAVE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _history_progress(store: Store, company_id: str) -> tuple[str | None, int, bool]:
    with store.transaction() as s:
        conn = s.get(ErpConnectionRow, company_id)
        cur = s.get(ErpSyncCursorRow, (company_id, "invoices", "history"))
        if conn is None or cur is None:
            return None, 0, False
        return conn.phase, cur.pages, bool(cur.page_token)


def test_sigkill_mid_history_then_restart_ends_with_every_record_exactly_once(store, sandbox):
    state = sandbox.state_of(years=3, invoices_per_year=50)
    state.latency_seconds = 0.01  # keeps the history paging slow enough to be caught in the middle
    bc = sandbox(state)
    cid = bc.company.id
    first = _cli(bc, store, "connect", "--company", cid, "--json")
    deadline = time.monotonic() + 60
    try:
        while True:
            assert first.poll() is None, f"connect ended before the kill: {first.communicate()}"
            assert time.monotonic() < deadline, "never reached the middle of the history"
            phase, pages, resumable = _history_progress(store, cid)
            if phase == "history" and pages >= 2 and resumable:
                break
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()  # only this test's own child process
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    with store.transaction() as s:
        conn = s.get(ErpConnectionRow, cid)
        assert (conn.status, conn.phase) == ("pending", "history")
        assert conn.lease_owner and conn.lease_owner.split(":")[1] == str(first.pid)
        stored_at_kill = s.get(ErpSyncCursorRow, (cid, "invoices", "history")).records

    second = _cli(bc, store, "sync", "--company", cid, "--json")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-2000:]

    counts = bc.assert_mirrored(store, cid)
    assert counts["invoices"] == len(bc.invoices())
    with store.transaction() as s:
        conn = s.get(ErpConnectionRow, cid)
        assert (conn.status, conn.phase, conn.lease_owner) == ("connected", "delta", None)
        history = s.get(ErpSyncCursorRow, (cid, "invoices", "history"))
        recent = s.get(ErpSyncCursorRow, (cid, "invoices", "recent"))
        states = set(s.scalars(select(ErpSyncCursorRow.state).where(ErpSyncCursorRow.company_id == cid,
                                                                     ErpSyncCursorRow.stream != "delta")))
        deltas = set(s.scalars(select(ErpSyncCursorRow.state).where(ErpSyncCursorRow.company_id == cid,
                                                                     ErpSyncCursorRow.stream == "delta")))
    assert states <= {"done", "unsupported"}
    # the run that completed the initial sync read no delta (the next poll does)
    assert deltas <= {"pending", "unsupported"}
    # resumed where it stopped: read at most one page again, never the whole window
    assert history.records >= stored_at_kill
    assert recent.records + history.records <= len(bc.invoices()) + 10 + 2

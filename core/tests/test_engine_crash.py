"""The crash test: a real process is SIGKILLed after the PSP applied a capture and before the
engine committed the outcome; after a restart the PSP shows exactly one capture.

psp_mock keeps its ledger in process memory, which would die with the process, so the PSP here
is the durable test PSP (``payweave.core.testing.durable_psp``): its ledger and idempotency
records are a SQLite file shared by every process. It is told to hang right after committing
the capture at the "PSP", which gives the test a deterministic window to kill the engine in.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from payweave.core.engine import PaymentEngine, PaymentMethodSetup, TxStatus
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.testing import durable_psp
from payweave.core.testing.documents import document_event, item_line, sales_document

CHILD = Path(__file__).with_name("proc_child.py")
D = Decimal


def run_child(spec: dict, *, wait: bool = True) -> subprocess.Popen:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    if wait:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return proc


def durable_engine(store, psp_settings: dict) -> PaymentEngine:
    settings = PayweaveSettings(database_url=str(store.url), plugins="", accounts={"psp_durable": {"default": psp_settings}})
    manager = PluginManager(settings)
    assert manager.register(durable_psp, name="psp_durable").status == "active"
    return PaymentEngine(store, manager, settings=settings)


@pytest.mark.slow
def test_sigkill_between_psp_call_and_commit_then_restart_gives_one_capture(store, tmp_path):
    ledger_path = str(tmp_path / "psp-ledger.db")
    marker = tmp_path / "psp-applied.json"
    engine = durable_engine(store, {"ledger_path": ledger_path})
    engine.save_payment_method(PaymentMethodSetup(company_id="CRONUS", code="CARD", psp="psp_durable"))
    doc = sales_document(payment_method_code="CARD", lines=[item_line(10000, "250.00")])
    tx = engine.handle_event(document_event("released", doc)).transaction
    tx = engine.reserve("CRONUS", tx.id)
    assert tx.status is TxStatus.RESERVED

    url = store.url.render_as_string(hide_password=False)
    child = run_child(
        {
            "command": "capture",
            "database_url": url,
            "company_id": "CRONUS",
            "transaction_id": tx.id,
            "psp": {"ledger_path": ledger_path, "hang_after": "capture", "hang_marker": str(marker)},
        },
        wait=False,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, "the child never reached the PSP"
        time.sleep(0.02)
    assert json.loads(marker.read_text())["pid"] == child.pid
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    # the PSP captured; payweave has the intent but no outcome
    assert durable_psp.count_movements(ledger_path, "capture", tx.psp_reference) == 1
    crashed = engine.get_transaction("CRONUS", tx.id)
    assert crashed.status is TxStatus.RESERVED
    assert [(o.kind, o.status) for o in crashed.operations] == [("reserve", "succeeded"), ("capture", "started")]
    key = crashed.operations[-1].idempotency_key

    # restart: a new process replays the intent with its stored key
    run_child({"command": "recover", "database_url": url, "psp": {"ledger_path": ledger_path}})
    recovered = engine.get_transaction("CRONUS", tx.id)
    assert recovered.status is TxStatus.CAPTURED and recovered.amounts.captured == D("250.00")
    assert recovered.operations[-1].status == "succeeded" and recovered.operations[-1].idempotency_key == key
    assert durable_psp.count_movements(ledger_path, "capture") == 1
    assert durable_psp.payment_totals(ledger_path, tx.psp_reference)["captured"] == D("250.00")

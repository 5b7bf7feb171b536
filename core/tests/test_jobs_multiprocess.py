"""Several worker *processes* on one PostgreSQL queue: 1,000 due capture jobs are each done
exactly once (the PSP ledger shows exactly 1,000 captures), also when one worker is SIGKILLed
in the middle of its batch, right after the PSP applied one of its captures.

The PSP is the durable test PSP (its ledger is a SQLite file all processes share), because
psp_mock's ledger lives in one process's memory. The 1,000 reserved transactions (and their
reservations at the PSP) are written in bulk: the subject here is the queue and its workers.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from payweave.core.engine import PaymentMethodSetup, TxStatus
from payweave.core.jobs.queue import JobKind, JobStatus
from payweave.core.store import JobRow, OperationRow, PaymentMethodRow, Store, TransactionRow
from payweave.core.testing import durable_psp

CHILD = Path(__file__).with_name("proc_child.py")
JOBS = 1000
WORKERS = 4
LEASE = 3.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_store(postgres_store: Store | None) -> Store:
    if postgres_store is None:
        pytest.skip("PostgreSQL tests need PAYWEAVE_TEST_POSTGRES_URL (a postgresql+psycopg:// URL); it is not set")
    postgres_store.delete_all()
    return postgres_store


def seed(store: Store, ledger_path: str, count: int) -> list[str]:
    """``count`` reserved 10.00 EUR transactions with their reservation at the PSP and a due capture job each."""
    now = datetime.now(UTC)
    setup = PaymentMethodSetup(company_id="CRONUS", code="CARD", psp="psp_durable")
    tx_rows, payments, jobs = [], [], []
    for i in range(count):
        tx_id, ref = str(uuid.uuid4()), f"dpay_seed_{i:05d}"
        tx_rows.append(dict(
            id=tx_id, company_id="CRONUS", document_type="sales_order", document_id=f"doc-{i}", document_number=f"SO-{i}",
            payment_method_code="CARD", psp="psp_durable", psp_account="default", currency="EUR", status="reserved",
            origin="document", no_cart=False, auto_capture=False, psp_reference=ref, authorized_minor=1000,
            captured_minor=0, voided_minor=0, refunded_minor=0, credited_minor=0, expired_minor=0, amount_minor=1000,
            invoiced_minor=1000, expires_at=now + timedelta(days=7), cart_hash="", psp_cart_hash="", next_seq=1, version=1,
            created_at=now, updated_at=now,
        ))
        payments.append(dict(reference=ref, currency="EUR", amount=1000, captured=0, released=0, refunded=0,
                             created_at=now.isoformat()))
        jobs.append(dict(
            company_id="CRONUS", kind=JobKind.CAPTURE.value, status="pending", due_at=now,
            payload={"transaction_id": tx_id, "amount": "10.00", "request_id": f"bulk-capture:{tx_id}"},
            attempts=0, max_attempts=8, transaction_id=tx_id, created_at=now, updated_at=now,
        ))
    with store.transaction() as s:
        s.execute(insert(PaymentMethodRow).values(
            company_id="CRONUS", code="CARD", description="", psp="psp_durable", psp_account="default",
            capture_timing="job_queue", refund_timing="manual", options=setup.options(), created_at=now, updated_at=now,
        ))
        s.execute(insert(TransactionRow), tx_rows)
        s.execute(insert(JobRow), jobs)
    with durable_psp.ledger_engine(ledger_path).begin() as conn:
        conn.execute(insert(durable_psp.payments), payments)
    return [row["id"] for row in tx_rows]


def start_worker(url: str, ledger_path: str, name: str, *, idle_exit: float = 1.5, **psp: object) -> subprocess.Popen:
    spec = {
        "command": "worker",
        "name": name,
        "database_url": url,
        "psp": {"ledger_path": ledger_path, **psp},
        "jobs": {"lease_seconds": LEASE, "batch_size": 10, "poll_interval": 0.05, "backoff_base": 0.2, "backoff_max": 2},
        "idle_exit": idle_exit,
        "max_seconds": 200,
    }
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def check_exactly_once(store: Store, ledger_path: str, tx_ids: list[str]) -> None:
    assert durable_psp.count_movements(ledger_path, "capture") == JOBS
    per_reference = durable_psp.captures_by_reference(ledger_path)
    assert len(per_reference) == JOBS and set(per_reference.values()) == {1}
    with store.transaction() as s:
        statuses = dict(s.execute(
            select(JobRow.status, func.count()).where(JobRow.kind == JobKind.CAPTURE.value).group_by(JobRow.status)
        ).all())
        captured = s.scalar(select(func.count()).select_from(TransactionRow).where(
            TransactionRow.status == TxStatus.CAPTURED.value, TransactionRow.captured_minor == 1000))
        ops = s.scalar(select(func.count()).select_from(OperationRow).where(
            OperationRow.kind == "capture", OperationRow.status == "succeeded"))
    assert statuses == {JobStatus.DONE.value: JOBS}
    assert captured == JOBS and ops == JOBS


def test_four_workers_do_each_of_1000_jobs_exactly_once(pg_store, tmp_path, postgres_url):
    ledger = str(tmp_path / "psp.db")
    tx_ids = seed(pg_store, ledger, JOBS)
    started = time.monotonic()
    workers = [start_worker(postgres_url, ledger, f"w{i}") for i in range(WORKERS)]
    outputs = [w.communicate(timeout=240) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    done = [json.loads(out.strip().splitlines()[-1])["done"] for out, _ in outputs]
    assert sum(done) >= JOBS and all(n > 0 for n in done), done  # every worker took a share
    check_exactly_once(pg_store, ledger, tx_ids)
    print(f"{JOBS} jobs by {WORKERS} workers in {time.monotonic() - started:.1f} s: {done}")


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(pg_store, tmp_path, postgres_url):
    ledger = str(tmp_path / "psp.db")
    marker = tmp_path / "victim-applied.json"
    tx_ids = seed(pg_store, ledger, JOBS)
    victim = start_worker(postgres_url, ledger, "victim", hang_after="capture", hang_nth=25, hang_marker=str(marker))
    # the others wait long enough for the victim's leases to expire before calling it a day
    others = [start_worker(postgres_url, ledger, f"w{i}", idle_exit=LEASE + 2) for i in range(WORKERS - 1)]
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "the victim never reached its 25th capture"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)  # after the PSP applied its capture, before payweave committed it
    victim.wait(timeout=30)
    hung_key = json.loads(marker.read_text())["key"]
    outputs = [w.communicate(timeout=240) for w in others]
    for w, (_, err) in zip(others, outputs, strict=True):
        assert w.returncode == 0, err
    check_exactly_once(pg_store, ledger, tx_ids)
    with pg_store.transaction() as s:
        hung = s.scalars(select(OperationRow).where(OperationRow.idempotency_key == hung_key)).one()
        retaken = s.scalar(select(func.count()).select_from(JobRow).where(
            JobRow.kind == JobKind.CAPTURE.value, JobRow.attempts >= 2))
    # the capture the PSP applied for the victim was finished by another worker with the same key
    assert hung.status == "succeeded" and hung.attempts >= 1
    assert retaken >= 1  # the victim's leased jobs were taken over after their lease expired

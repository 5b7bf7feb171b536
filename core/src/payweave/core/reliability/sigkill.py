"""Schedules whose payweave process is really killed (SIGKILL) at a chosen point.

Per schedule, a *victim* process (:mod:`payweave.core.reliability.victim`) runs a flow against
the shared store and the durable test PSP (its ledger is a SQLite file, so it outlives the
victim) and BC's sandbox (served by this process over HTTP). At the kill point the victim
writes a marker and waits; this process sends it SIGKILL. A second victim then starts on the
same store, PSP and BC, repeats the client's requests with the same request ids and recovers
(replays unanswered calls, takes over the dead worker's job leases, retries write-backs). Then
the PSP's ledger, the store and BC are compared.

Victims are started ahead of time (a small pool), so their interpreter start-up overlaps the
previous schedule.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from payweave.core.engine import PaymentEngine, PaymentMethodSetup
from payweave.core.engine.statemachine import Ledger, derive_status, phase_of
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import OperationRow, Store, TransactionRow
from payweave.core.sync import ErpSyncService, SyncSettings
from payweave.core.sync.models import ErpWritebackRow
from payweave.core.sync.writeback import document_number
from payweave.core.testing import durable_psp
from payweave.core.testing.loopback import LoopbackServer
from payweave.hooks.money import from_minor_units, to_minor_units

from .chaos import ChaosErp, ChaosPsp
from .faults import FaultController
from .schedule import ScheduleOutcome

COMPANY = "KILLED"
FLOWS = ("capture", "capture_job", "refund", "void", "writeback")
#: where a victim can be killed, per flow
POINTS: dict[str, tuple[str, ...]] = {
    "capture": ("step.authorize", "psp.reserve.after", "psp.capture.before", "psp.capture.after", "step.capture-1"),
    "capture_job": ("psp.reserve.after", "step.posted", "step.worker", "psp.capture.before", "psp.capture.after"),
    "refund": ("psp.capture.after", "step.refund-0", "psp.refund.before", "psp.refund.after"),
    "void": ("psp.capture.after", "step.void", "psp.void.before", "psp.void.after"),
    "writeback": ("psp.capture.after", "step.writeback", "erp.record_payment.before", "erp.record_payment.after"),
}


class VictimPool:
    """Victim processes started ahead, each waiting (imported) for its spec on stdin."""

    def __init__(self, size: int = 2, env: dict[str, str] | None = None) -> None:
        self.size = size
        self.env = {**os.environ, **(env or {})}
        self._ready: deque[subprocess.Popen[str]] = deque()
        self._lock = threading.Lock()
        self.started = 0
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "payweave.core.reliability.victim"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.started += 1
        with self._lock:
            self._ready.append(proc)

    def take(self) -> subprocess.Popen[str]:
        with self._lock:
            proc = self._ready.popleft()
        self._spawn()
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"a victim process did not start: {line!r} {err[-2000:]}")
        return proc

    def close(self) -> None:
        with self._lock:
            procs = list(self._ready)
            self._ready.clear()
        for proc in procs:
            try:
                proc.stdin.close() if proc.stdin else None
                proc.wait(timeout=10)
            except Exception:
                proc.kill()


@dataclass
class KillStats:
    killed: Counter[str] = field(default_factory=Counter)
    not_reached: int = 0
    processes: int = 0


class SigkillRunner:
    def __init__(self, workdir: Path, *, database_url: str | None = None, pool_size: int = 3,
                 log_dir: Path | None = None, scanner: Any = None) -> None:
        from payweave.plugins.erp_businesscentral.sandbox import SandboxClock, SandboxState, create_app, seed

        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.database_url = database_url or f"sqlite:///{workdir / f'killed-{self.run_id}.db'}"
        self.ledger_path = str(workdir / f"durable-psp-{self.run_id}.db")
        self.pepper = f"pepper-{uuid.uuid4().hex}"
        start = datetime.now(UTC) - timedelta(seconds=30)
        self.bc_state = SandboxState(clock=SandboxClock(start=start), webhook_delivery="manual")
        seed(self.bc_state, seed=5, customers=3, items=3, invoices_per_year=3, years=1, orders=1, credit_memos=1,
             return_orders=1, draft_invoices=1)
        self.bc_company = next(iter(self.bc_state.companies.values()))
        self.bc_server = LoopbackServer(create_app(self.bc_state)).start()
        client_id, secret = self.bc_state.register_app()
        self.bc_account = {
            "tenant_id": self.bc_state.tenant_id, "environment": self.bc_state.environment, "client_id": client_id,
            "client_secret": secret, "token_url": f"{self.bc_server.url}/{{tenant}}/oauth2/v2.0/token",
            "api_base_url": self.bc_server.url, "read_timeout": 10, "max_attempts": 5,
        }
        self.stats = KillStats()
        self.log_dir = log_dir or workdir
        self.scanner = scanner
        if scanner is not None:
            scanner.add("api_key_pepper (victims)", self.pepper)
            scanner.add("bc_client_secret (victims)", secret)
        Store(self.database_url).dispose()
        self._setup()
        self.pool = VictimPool(pool_size, env={"PAYWEAVE_RELIABILITY_LOG_DIR": str(self.log_dir),
                                               "PAYWEAVE_LOG_LEVEL": "INFO"})

    def _manager(self) -> PluginManager:
        from payweave.plugins.erp_businesscentral import plugin as bc_plugin
        from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings

        settings = PayweaveSettings(database_url=self.database_url, plugins="", api_key_pepper=self.pepper, accounts={
            "psp_chaos": {"default": {"ledger_path": self.ledger_path}}, "erp_chaos": {"default": self.bc_account}})
        holder: dict[str, PluginManager] = {}
        manager = holder["m"] = PluginManager(settings)
        controller = FaultController()
        for obj, name in (
            (durable_psp, "psp_durable"),
            (ChaosPsp(lambda: holder["m"], controller, name="psp_chaos", inner="psp_durable",
                      settings_model=durable_psp.DurablePspSettings), "psp_chaos"),
            (bc_plugin, "erp_businesscentral"),
            (ChaosErp(lambda: holder["m"], controller, name="erp_chaos", inner="erp_businesscentral",
                      settings_model=BusinessCentralSettings), "erp_chaos"),
        ):
            assert manager.register(obj, name=name).status == "active"
        return manager

    def _setup(self) -> None:
        manager = self._manager()
        store = Store(self.database_url, migrate=False)
        try:
            engine = PaymentEngine(store, manager, settings=manager.settings)
            for code, timing in (("CARD", "manual"), ("JOBQ", "job_queue")):
                engine.save_payment_method(PaymentMethodSetup(company_id=COMPANY, code=code, psp="psp_chaos",
                                                              capture_timing=timing))
            sync = ErpSyncService(store, manager, settings=SyncSettings(pdfs="none"))
            sync.connect(plugin="erp_chaos")
            sync.set_account_setup(self.bc_company.id, payments_account="10900", bank_account="CHECKING",
                                   fee_account="60800", actor="reliability")
        finally:
            store.dispose()

    # ------------------------------------------------------------------ one schedule
    def spec_for(self, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        flow = rng.choice(FLOWS)
        total = rng.randint(100, 500_000)
        spec: dict[str, Any] = {
            "seed": seed, "flow": flow, "company": COMPANY, "currency": "EUR", "total": total,
            "document_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "method": "CARD",
            "database_url": self.database_url, "ledger_path": self.ledger_path, "pepper": self.pepper,
            "kill": rng.choice(POINTS[flow]), "occurrence": 1,
        }
        if flow == "capture":
            part = rng.randint(1, total - 1)
            spec["captures"] = [part, total - part]
        elif flow == "capture_job":
            spec["method"] = "JOBQ"
            spec["invoice_document_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif flow == "refund":
            spec["captures"] = [total]
            first = rng.randint(1, total - 1)
            spec["refunds"] = [first, rng.randint(1, total - first)]
        elif flow == "void":
            spec["captures"] = [rng.randint(1, total - 1)]
            spec["void"] = True
        elif flow == "writeback":
            spec["currency"] = self.bc_company.lcy
            spec["captures"] = [total]
            invoice = self._bc_invoice(total, spec["currency"])
            spec.update(bc_account=self.bc_account, bc_company=self.bc_company.id, bc_invoice_id=invoice.id,
                        bc_customer_id=invoice.customer.id, bc_invoice_total=str(invoice.total_incl))
        return spec

    def _bc_invoice(self, total: int, currency: str) -> Any:
        from payweave.plugins.erp_businesscentral.sandbox.state import LineSpec

        state, company = self.bc_state, self.bc_company
        with state.lock:
            customer = [c for c in sorted(company.tables["customers"].by_id.values(), key=lambda c: c.number)
                        if not c.currency][0]
            item = sorted(company.tables["items"].by_id.values(), key=lambda i: i.number)[0]
            draft = state.create_document(company, "invoice", customer, [LineSpec(
                number=item.number, quantity=Decimal(1), unit_price=from_minor_units(total, currency),
                tax_percent=Decimal(0))])
            return state.post_document(company, draft)

    def run(self, seed: int) -> ScheduleOutcome:
        started = time.perf_counter()
        spec = self.spec_for(seed)
        outcome = ScheduleOutcome(seed=seed, flow=spec["flow"], mode="sigkill",
                                  backend="postgresql" if self.database_url.startswith("postgresql") else "sqlite")
        marker = self.workdir / f"kill-{self.run_id}-{seed}.json"
        spec["marker"] = str(marker)
        bc_before = len(self.bc_company.cust_ledger)
        first = self.pool.take()
        self.stats.processes += 1
        assert first.stdin is not None
        first.stdin.write(json.dumps(spec) + "\n")
        first.stdin.flush()
        deadline = time.monotonic() + 90
        killed = False
        while time.monotonic() < deadline:
            if marker.exists():
                info = json.loads(marker.read_text() or "{}")
                if info.get("pid") == first.pid:
                    os.kill(first.pid, signal.SIGKILL)
                    first.wait(30)
                    killed = first.returncode == -signal.SIGKILL
                    break
            if first.poll() is not None:
                break
            time.sleep(0.01)
        else:
            first.kill()
            outcome.violations.append(("settled", f"the first process neither reached {spec['kill']} nor finished in 90 s"))
        if killed:
            self.stats.killed[spec["kill"]] += 1
            outcome.faults = [f"sigkill@{spec['kill']}"]
        else:
            self.stats.not_reached += 1
            if first.returncode not in (0, None):
                err = first.stderr.read() if first.stderr else ""
                outcome.violations.append(("intent_exactly_once", f"the first process failed ({first.returncode}): {err[-800:]}"))
        # restart: a new process repeats the client's requests and recovers
        second = self.pool.take()
        self.stats.processes += 1
        resume = {**spec, "kill": None}
        assert second.stdin is not None
        second.stdin.write(json.dumps(resume) + "\n")
        second.stdin.flush()
        try:
            second.wait(120)
        except subprocess.TimeoutExpired:
            second.kill()
        if second.returncode != 0:
            err = second.stderr.read() if second.stderr else ""
            outcome.violations.append(("settled", f"the restarted process failed ({second.returncode}): {err[-800:]}"))
        for proc in (first, second):
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._scan_logs(first.pid, second.pid)
        self._check(spec, outcome, bc_before)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _scan_logs(self, *pids: int) -> None:
        for pid in pids:
            path = self.log_dir / f"victim-{pid}.log"
            if path.exists():
                if self.scanner is not None:
                    self.scanner.write(path.read_text(errors="replace"))
                path.unlink()

    # ------------------------------------------------------------------ the checks
    def _check(self, spec: dict[str, Any], outcome: ScheduleOutcome, bc_before: int) -> None:
        cur = spec["currency"]
        store = Store(self.database_url, migrate=False)
        try:
            with store.transaction() as s:
                rows = s.scalars(select(TransactionRow).where(TransactionRow.company_id == COMPANY,
                                                              TransactionRow.document_id == spec["document_id"])).all()
                outcome.checked["one_payment"] += 1
                if len(rows) != 1:
                    outcome.violations.append(("one_payment", f"{len(rows)} transactions for one document"))
                    return
                tx = rows[0]
                ops = s.scalars(select(OperationRow).where(OperationRow.transaction_id == tx.id)).all()
                wbs = s.scalars(select(ErpWritebackRow).where(ErpWritebackRow.source_key.startswith(f"{tx.id}:"))).all()
        finally:
            store.dispose()
        fail = outcome.violations.append
        outcome.checked["settled"] += 1
        for op in ops:
            if op.status != "succeeded":
                fail(("settled", f"{op.kind} operation {op.id} is {op.status} ({op.error_code}: {op.error_message})"))
        ledger = Ledger(cur, authorized=tx.authorized_minor, captured=tx.captured_minor, voided=tx.voided_minor,
                        expired=tx.expired_minor, refunded=tx.refunded_minor, credited=tx.credited_minor)
        outcome.checked["books_sound"] += 1
        try:
            ledger.check()
            if derive_status(phase_of(tx.status), ledger).value != tx.status:
                fail(("books_sound", f"status {tx.status} disagrees with the ledger"))
        except AssertionError as exc:
            fail(("books_sound", str(exc)))
        engine = durable_psp.ledger_engine(self.ledger_path)
        with engine.begin() as conn:
            payment = conn.execute(select(durable_psp.payments).where(
                durable_psp.payments.c.reference == (tx.psp_reference or ""))).first()
            moves = conn.execute(select(durable_psp.movements).where(
                durable_psp.movements.c.idempotency_key.like(f"pw-{tx.id}-%"))).all()
        outcome.checked["psp_matches_store"] += 1
        if payment is None:
            fail(("psp_matches_store", f"the PSP has no payment {tx.psp_reference}"))
            return
        for name, at_psp, here in (("authorized", payment.amount, tx.authorized_minor), ("captured", payment.captured, tx.captured_minor),
                                   ("released", payment.released, tx.voided_minor + tx.expired_minor),
                                   ("refunded", payment.refunded, tx.refunded_minor)):
            if at_psp != here:
                fail(("psp_matches_store", f"{name}: {at_psp} at the PSP, {here} in payweave (minor units)"))
        outcome.checked["intent_exactly_once"] += 1
        by_kind: dict[str, list[int]] = {}
        for m in moves:
            by_kind.setdefault(m.kind, []).append(m.amount)
        reserves = by_kind.get("reserve", [])
        if len(reserves) != 1:
            fail(("one_payment", f"{len(reserves)} reservations at the PSP for one document"))
        captures = spec.get("captures") or ([spec["total"]] if spec["flow"] == "capture_job" else [])
        for kind, wanted in (("capture", captures), ("refund", spec.get("refunds", []))):
            if sorted(by_kind.get(kind, [])) != sorted(wanted):
                fail(("intent_exactly_once", f"{kind} movements {sorted(by_kind.get(kind, []))}, intended {sorted(wanted)}"))
        if len(by_kind.get("void", [])) != (1 if spec.get("void") else 0):
            fail(("intent_exactly_once", f"{len(by_kind.get('void', []))} voids at the PSP"))
        outcome.checked["keys_exactly_once"] += 1
        keys = Counter(m.idempotency_key for m in moves)
        succeeded = {op.idempotency_key for op in ops if op.status == "succeeded"}
        for key, n in keys.items():
            if n > 1:
                fail(("keys_exactly_once", f"{n} movements with key {key}"))
            if key not in succeeded:
                fail(("keys_exactly_once", f"movement with key {key} matches no succeeded operation"))
        if spec.get("bc_invoice_id"):
            outcome.checked["bc_exactly_once"] += 1
            with self.bc_state.lock:
                entries = [e for e in self.bc_company.cust_ledger[bc_before:] if e.applied_to_id == spec["bc_invoice_id"]]
                invoice = self.bc_company.tables["invoices"].by_id.get(spec["bc_invoice_id"])
            numbers = {document_number(self.bc_company.id, "payment", f"{tx.id}:{op.idempotency_key}")
                       for op in ops if op.kind == "capture" and op.status == "succeeded"}
            got = Counter(e.document_number for e in entries)
            if set(got) != numbers or any(n != 1 for n in got.values()):
                fail(("bc_exactly_once", f"BC payments {dict(got)}, intended one each of {sorted(numbers)}"))
            if any(wb.status != "posted" for wb in wbs):
                fail(("bc_exactly_once", f"write-backs {[(w.document_number, w.status) for w in wbs]}"))
            if invoice is not None:
                remaining = to_minor_units(invoice.remaining, cur)
                if remaining != to_minor_units(Decimal(spec["bc_invoice_total"]), cur) - tx.captured_minor:
                    fail(("bc_exactly_once", f"BC invoice remaining {invoice.remaining}"))

    def orphan_payments(self) -> list[str]:
        """Payments at the durable PSP that no transaction knows (after all schedules)."""
        engine = durable_psp.ledger_engine(self.ledger_path)
        with engine.begin() as conn:
            refs = set(conn.execute(select(durable_psp.payments.c.reference)).scalars())
        store = Store(self.database_url, migrate=False)
        try:
            with store.transaction() as s:
                known = set(s.scalars(select(TransactionRow.psp_reference).where(TransactionRow.company_id == COMPANY)))
        finally:
            store.dispose()
        return sorted(refs - known)

    def close(self) -> None:
        self.pool.close()
        self.bc_server.stop()
        durable_psp._engines.pop(self.ledger_path, None)


__all__ = ["FLOWS", "POINTS", "KillStats", "SigkillRunner", "VictimPool"]

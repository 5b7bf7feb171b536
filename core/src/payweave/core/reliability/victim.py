"""A payweave process that a SIGKILL schedule really kills (run as ``python -m``, never imported
by the product).

It imports everything, prints ``ready``, then reads one JSON spec from stdin and acts as the
payweave service *and* its worker would for one flow (:mod:`payweave.core.reliability.sigkill`):
the client's requests with their fixed request ids, then recovery (replays, due jobs, pending
write-backs). The PSP is the durable test PSP (its ledger is a SQLite file every process shares)
behind the fault-injecting wrapper; BC is the parent's sandbox over HTTP.

With a ``kill`` point in the spec, the wrapper writes the marker file when the point is reached
and waits; the parent then sends SIGKILL. Exit codes: 0 done, 3 a request was refused (the
reason on stderr), 4 it could not finish.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from payweave.core.engine import PaymentEngine
from payweave.core.jobs.worker import Worker
from payweave.core.logging import configure
from payweave.core.plugins import PluginManager
from payweave.core.settings import JobSettings, PayweaveSettings
from payweave.core.store import Store
from payweave.core.sync import ErpSyncService, SyncSettings
from payweave.core.sync import jobs as _sync_jobs  # noqa: F401  (registers the erp_sync handler)
from payweave.core.testing import durable_psp
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import Money
from payweave.hooks.money import from_minor_units

from .chaos import ChaosErp, ChaosPsp
from .faults import FaultController, FaultKind, FaultPlan, PlannedFault

PSP, ERP = "psp_chaos", "erp_chaos"


def build(spec: dict[str, Any], controller: FaultController) -> tuple[PaymentEngine, ErpSyncService | None, Worker]:
    from payweave.plugins.erp_businesscentral import plugin as bc_plugin
    from payweave.plugins.erp_businesscentral.settings import BusinessCentralSettings

    accounts: dict[str, Any] = {PSP: {"default": {"ledger_path": spec["ledger_path"]}}}
    if spec.get("bc_account"):
        accounts[ERP] = {"default": spec["bc_account"]}
    settings = PayweaveSettings(
        database_url=spec["database_url"], plugins="", api_key_pepper=spec["pepper"], accounts=accounts,
        jobs=JobSettings(lease_seconds=1.0, backoff_base=0.05, backoff_max=0.5, max_attempts=50, poll_interval=0.05),
    )
    holder: dict[str, PluginManager] = {}
    manager = holder["m"] = PluginManager(settings)
    plugins: list[tuple[Any, str]] = [
        (durable_psp, "psp_durable"),
        (ChaosPsp(lambda: holder["m"], controller, name=PSP, inner="psp_durable",
                  settings_model=durable_psp.DurablePspSettings), PSP),
    ]
    if spec.get("bc_account"):
        plugins += [(bc_plugin, "erp_businesscentral"),
                    (ChaosErp(lambda: holder["m"], controller, name=ERP, inner="erp_businesscentral",
                              settings_model=BusinessCentralSettings), ERP)]
    for obj, name in plugins:
        record = manager.register(obj, name=name)
        assert record.status == "active", record.error
    store = Store(settings.database_url, migrate=False)
    engine = PaymentEngine(store, manager, settings=settings)
    sync = None
    if spec.get("bc_account"):
        sync = ErpSyncService(store, manager, settings=SyncSettings(pdfs="none", writeback_lease_seconds=2.0,
                                                                    lease_seconds=2.0),
                              queue=engine.jobs, document_event_handler=engine.handle_event)
    worker = Worker(engine, name=f"victim-{os.getpid()}", lease_seconds=1.0, poll_interval=0.05, renewal_scan=False)
    return engine, sync, worker


def steps(spec: dict[str, Any], engine: PaymentEngine, sync: ErpSyncService | None, worker: Worker) -> list[tuple[str, Any]]:
    cur = spec["currency"]
    company = spec["company"]
    total = from_minor_units(spec["total"], cur)
    doc = sales_document(company_id=company, document_id=spec["document_id"], number=f"KILL-{spec['seed']}",
                         lines=[item_line(10000, total, currency=cur)], payment_method_code=spec["method"], currency=cur)
    rid = lambda name: f"kill:{spec['seed']}:{name}"  # noqa: E731

    def tx() -> str:
        view = engine.transaction_for_document(company, doc.document_type, doc.document_id)
        if view is None:
            raise LookupError("no transaction yet")
        return view.id

    out: list[tuple[str, Any]] = [
        ("release", lambda: engine.handle_event(document_event("released", doc, event_id=rid("released")))),
        ("authorize", lambda: engine.reserve(company, tx(), request_id=rid("authorize"))),
    ]
    if spec["flow"] == "capture_job":
        invoice = posted_invoice(doc, document_id=spec["invoice_document_id"], number=f"KILL-INV-{spec['seed']}")
        out.append(("posted", lambda: engine.handle_event(document_event(
            "posted", invoice, event_id=rid("posted"), posted_document_id=invoice.document_id))))
        out.append(("worker", lambda: worker.run_until_idle(idle_seconds=0.3, max_seconds=30)))
    for i, part in enumerate(spec.get("captures", [])):
        out.append((f"capture-{i}", lambda i=i, part=part: engine.capture(
            company, tx(), from_minor_units(part, cur), request_id=rid(f"capture-{i}"))))
    if spec.get("void"):
        out.append(("void", lambda: engine.void(company, tx(), None, request_id=rid("void"))))
    for i, part in enumerate(spec.get("refunds", [])):
        out.append((f"refund-{i}", lambda i=i, part=part: engine.refund(
            company, tx(), from_minor_units(part, cur), request_id=rid(f"refund-{i}"))))
    if spec.get("bc_invoice_id") and sync is not None:
        def writeback() -> Any:
            view = engine.get_transaction(company, tx())
            results = []
            for op in [o for o in view.operations if o.kind == "capture" and o.status == "succeeded"]:
                results.append(sync.record_payment(
                    spec["bc_company"], payment_key=f"{view.id}:{op.idempotency_key}", invoice_id=spec["bc_invoice_id"],
                    amount=Money(amount=op.amount, currency=cur), customer_id=spec["bc_customer_id"],
                    external_reference=view.psp_reference or ""))
            if any(r.status != "posted" for r in results):
                raise RetryLater("a write-back is still pending")
            return results

        out.append(("writeback", writeback))
    return out


class RetryLater(Exception):
    pass


def run(spec: dict[str, Any]) -> int:
    controller = FaultController()
    if spec.get("kill"):
        marker = Path(spec["marker"])

        def kill(point: str) -> None:
            marker.write_text(json.dumps({"pid": os.getpid(), "point": point}))
            time.sleep(600)  # the parent sends SIGKILL now

        controller.kill = kill
        controller.arm(FaultPlan([PlannedFault(spec["kill"], FaultKind.SIGKILL, spec.get("occurrence", 1))]), spec["flow"])
    engine, sync, worker = build(spec, controller)
    for name, call in steps(spec, engine, sync, worker):
        deadline = time.monotonic() + 60
        while True:
            controller.reached(f"step.{name}")
            try:
                call()
                break
            except PayweaveError as exc:
                if not exc.retryable:
                    print(f"refused: step {name}: {exc.code}: {exc.message}", file=sys.stderr, flush=True)
                    return 3
            except (LookupError, RetryLater):
                pass
            if time.monotonic() > deadline:
                print(f"step {name} did not complete in 60 s", file=sys.stderr, flush=True)
                return 4
            recover(engine, sync, worker, spec)
            time.sleep(0.05)
    recover(engine, sync, worker, spec)
    return 0


def recover(engine: PaymentEngine, sync: ErpSyncService | None, worker: Worker, spec: dict[str, Any]) -> None:
    """What a restarted service and worker do: replay unanswered calls, run due jobs, retry write-backs."""
    try:
        engine.recover()
        for _ in range(20):
            if worker.run_once() == 0:
                break
        if sync is not None:
            sync.process_pending_writebacks(spec["bc_company"])
    except PayweaveError:
        pass


def main() -> int:
    log_dir = os.environ.get("PAYWEAVE_RELIABILITY_LOG_DIR")
    stream = open(Path(log_dir) / f"victim-{os.getpid()}.log", "a", buffering=1) if log_dir else None  # noqa: SIM115
    configure("json", os.environ.get("PAYWEAVE_LOG_LEVEL", "WARNING"), stream=stream)
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    return run(json.loads(line))


if __name__ == "__main__":
    sys.exit(main())

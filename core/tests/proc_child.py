"""Child process for the crash and multi-process tests (run as a script, never collected).

    python proc_child.py '{"command": "capture", "database_url": ..., "psp": {...}, ...}'

Commands: ``capture`` (one capture of ``transaction_id``), ``recover`` (replay unfinished
operations, as a restarted service does), ``worker`` (run a job worker until the queue has
nothing due for ``idle_exit`` seconds). The PSP is the durable test PSP
(:mod:`payweave.core.testing.durable_psp`): its ledger is a SQLite file every process shares.
"""
from __future__ import annotations

import json
import sys

from payweave.core.engine import PaymentEngine
from payweave.core.logging import configure
from payweave.core.plugins import PluginManager
from payweave.core.settings import JobSettings, PayweaveSettings
from payweave.core.store import Store
from payweave.core.testing import durable_psp


def main(spec: dict) -> int:
    configure("json", spec.get("log_level", "WARNING"))
    settings = PayweaveSettings(
        database_url=spec["database_url"],
        plugins="",
        accounts={"psp_durable": {"default": spec["psp"]}},
        jobs=JobSettings(**spec.get("jobs", {})),
    )
    manager = PluginManager(settings)
    record = manager.register(durable_psp, name="psp_durable")
    assert record.status == "active", record.error
    engine = PaymentEngine(Store(settings.database_url, migrate=False), manager, settings=settings)
    command = spec["command"]
    if command == "capture":
        view = engine.capture(spec["company_id"], spec["transaction_id"], spec.get("amount"))
        print(json.dumps({"status": view.status.value}), flush=True)
    elif command == "recover":
        print(json.dumps({"recovered": engine.recover()}), flush=True)
    elif command == "worker":
        from payweave.core.jobs.worker import Worker

        worker = Worker(engine, name=spec.get("name"))
        done = worker.run_until_idle(idle_seconds=spec.get("idle_exit", 3.0), max_seconds=spec.get("max_seconds", 240))
        print(json.dumps({"worker": worker.name, "done": done}), flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))

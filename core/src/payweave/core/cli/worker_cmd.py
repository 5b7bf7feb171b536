"""``payweave worker``: a standalone job worker (any number of them on PostgreSQL)."""
from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from payweave.core.engine import PaymentEngine
from payweave.core.jobs.worker import Worker
from payweave.core.settings import PayweaveSettings

from .app import app, console


@app.command("worker")
def worker_command(
    name: Annotated[str | None, typer.Option(help="Worker name (lease owner); default host:pid:random.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Jobs claimed per poll (default: jobs.batch_size).")] = None,
    lease_seconds: Annotated[float | None, typer.Option(help="Lease per claimed job (default: jobs.lease_seconds).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit.")] = False,
) -> None:
    """Run a job worker: captures and refunds via job queue, late captures, reservation renewals,
    expiries, replays of unanswered PSP calls and ERP sync runs. Stops cleanly on SIGINT/SIGTERM."""
    settings = PayweaveSettings()
    engine = PaymentEngine.from_settings(settings)
    worker = Worker(engine, name=name, batch_size=batch_size, lease_seconds=lease_seconds)
    try:
        if once:
            total = 0
            while True:
                ran = worker.run_once()
                total += ran
                if ran == 0:
                    break
            console.print(f"worker {worker.name}: {total} job(s) run", highlight=False)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        console.print(f"worker {worker.name} running on {engine.store.url.render_as_string()} (Ctrl-C stops)", highlight=False)
        worker.run_forever(stop)
        console.print(f"worker {worker.name} stopped after {worker.processed} job(s)", highlight=False)
    finally:
        engine.store.dispose()

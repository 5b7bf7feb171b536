"""``payweave serve``: the HTTP service (BC-facing API, PSP webhooks, pay-by-link redirects,
health, readiness and metrics) under uvicorn, sharing the store with the job workers."""
from __future__ import annotations

import os
from typing import Annotated

import typer
import uvicorn

from payweave.core.settings import PayweaveSettings

from .app import app, console


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: service.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: service.port, 8780).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes (share the database).")] = 1,
    job_worker: Annotated[
        bool,
        typer.Option("--job-worker/--no-job-worker",
                     help="Run the job worker in this process (captures and refunds via job queue, late capture, "
                     "renewals, replays); use --no-job-worker when `payweave worker` processes run."),
    ] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the payweave HTTP service."""
    from payweave.core.service.runtime import JOB_WORKER_ENV, Runtime
    from payweave.core.service.context import build_context

    settings = PayweaveSettings()
    bind_host = host or settings.service.host
    bind_port = port if port is not None else settings.service.port
    console.print(
        f"payweave service on http://{bind_host}:{bind_port} (public URL {settings.service.public_base_url}), "
        f"{workers} worker process(es), job worker {'on' if job_worker else 'off'}",
        highlight=False,
    )
    if workers > 1:
        os.environ[JOB_WORKER_ENV] = "1" if job_worker else "0"
        uvicorn.run("payweave.core.service.runtime:app_factory", factory=True, host=bind_host, port=bind_port,
                    workers=workers, log_level=log_level, access_log=False)
        return
    runtime = Runtime(build_context(settings), job_worker=job_worker).start()
    try:
        uvicorn.run(runtime.app, host=bind_host, port=bind_port, log_level=log_level, access_log=False)
    finally:
        runtime.stop()

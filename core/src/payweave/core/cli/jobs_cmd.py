"""``payweave jobs``: list, retry and cancel durable jobs."""
from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from payweave.core.jobs.queue import JobQueue, JobStatus, JobView
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.hooks.errors import PayweaveError

from .app import app, console, err_console

jobs_app = typer.Typer(help="Durable jobs: captures and refunds via job queue, late captures, renewals, sync runs.",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

CompanyOption = Annotated[str | None, typer.Option("--company", "-c", help="Only this company's jobs.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _queue() -> JobQueue:
    settings = PayweaveSettings()
    return JobQueue(Store(settings.database_url), settings=settings.jobs)


def _fail(exc: PayweaveError) -> typer.Exit:
    err_console.print(f"[red]error:[/] {escape(exc.message)} [dim]({exc.code})[/]", highlight=False)
    return typer.Exit(1)


def _line(job: JobView) -> str:
    colour = {"failed": "red", "done": "green", "running": "yellow", "cancelled": "dim"}.get(job.status.value, "cyan")
    subject = job.transaction_id or json.dumps(job.payload, sort_keys=True)
    text = (
        f"#{job.id}  [{colour}]{job.status.value}[/]  {escape(job.kind)}  {escape(job.company_id)}  "
        f"due {job.due_at.strftime('%Y-%m-%d %H:%M:%S')}  attempts {job.attempts}/{job.max_attempts}  {escape(subject)}"
    )
    if job.lease_owner:
        text += f"  [dim]leased by {escape(job.lease_owner)}[/]"
    if job.last_error:
        text += f"\n      [red]{escape(job.last_error_code or '')}[/] {escape(job.last_error)}"
    return text


@jobs_app.command("list")
def list_jobs(
    company: CompanyOption = None,
    status: Annotated[str | None, typer.Option(help="pending, running, done, failed or cancelled.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind (capture, refund, late_capture, ...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest due first.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List jobs (failed ones with their last error)."""
    if status is not None and status not in {s.value for s in JobStatus}:
        err_console.print(f"[red]error:[/] unknown status {escape(status)!r}; use one of {', '.join(s.value for s in JobStatus)}")
        raise typer.Exit(2)
    queue = _queue()
    try:
        jobs = queue.list(company_id=company, status=status, kind=kind, limit=limit)
        counts = queue.counts(company_id=company)
    finally:
        queue.store.dispose()
    if as_json:
        typer.echo(json.dumps({"jobs": [j.model_dump(mode="json") for j in jobs], "counts": counts}, indent=2))
        return
    if not jobs:
        console.print("no jobs")
    for job in jobs:
        console.print(_line(job), highlight=False, soft_wrap=True)
    console.print("[dim]" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "[/]")


@jobs_app.command("retry")
def retry_job(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    company: CompanyOption = None,
) -> None:
    """Queue a failed or cancelled job again, due now, with fresh attempts."""
    queue = _queue()
    try:
        job = queue.retry(job_id, company_id=company)
    except PayweaveError as exc:
        raise _fail(exc) from None
    finally:
        queue.store.dispose()
    console.print(f"job #{job.id} queued again ({job.kind})", highlight=False)


@jobs_app.command("cancel")
def cancel_job(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    company: CompanyOption = None,
) -> None:
    """Cancel a pending or failed job (a running one cannot be cancelled)."""
    queue = _queue()
    try:
        job = queue.cancel(job_id, company_id=company)
    except PayweaveError as exc:
        raise _fail(exc) from None
    finally:
        queue.store.dispose()
    console.print(f"job #{job.id} cancelled ({job.kind})", highlight=False)

"""``payweave reliability``: prove that payweave loses no payment and never moves money twice.

Runs randomized fault schedules (crashes, real SIGKILLs, PSP timeouts after success, PSP 5xx/429,
BC 429/503 with Retry-After, BC drops after applying, dropped database connections, racing,
duplicated and reordered webhooks) over capture, void, refund, credit, payment links, BC
write-back and sync, then compares the PSP's ledger, payweave's store and BC's books. Exits 1 on
any violation and prints the command that replays it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .app import app, console


@app.command("reliability")
def reliability_command(
    size: Annotated[str, typer.Option(help="ci (500 + 20 SIGKILL schedules), soak (10,000 + 200) or smoke (40 + 4).")] = "ci",
    seed: Annotated[int | None, typer.Option(help="Run seed (default: random; printed in the report).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Processes running in-process schedules in parallel.")] = 2,
    postgres: Annotated[str | None, typer.Option(
        help="PostgreSQL server URL: a share of the schedules runs there (default: $PAYWEAVE_TEST_POSTGRES_URL).")] = None,
    schedules: Annotated[int | None, typer.Option(help="Override the number of in-process schedules.")] = None,
    sigkill: Annotated[int | None, typer.Option(help="Override the number of SIGKILL schedules.")] = None,
    schedule: Annotated[list[int] | None, typer.Option("--schedule", help="Replay this in-process schedule seed.")] = None,
    sigkill_schedule: Annotated[list[int] | None, typer.Option("--sigkill-schedule", help="Replay this SIGKILL schedule seed.")] = None,
    backend: Annotated[str | None, typer.Option(help="Backend of replayed schedules: sqlite or postgresql.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where the run's databases live (default: a temporary directory).")] = None,
) -> None:
    """Randomized fault schedules, then the ledgers of the PSP, payweave and BC must agree."""
    from payweave.core.reliability.runner import POSTGRES_ENV, SIZES, RunConfig, run

    if size not in SIZES:
        raise typer.BadParameter(f"size must be one of {', '.join(SIZES)}", param_hint="--size")
    config = RunConfig(size=size, seed=seed, jobs=jobs, postgres_url=postgres or os.environ.get(POSTGRES_ENV) or None,
                       schedules=schedules, sigkill=sigkill, only=list(schedule or []),
                       only_sigkill=list(sigkill_schedule or []), backend=backend, workdir=workdir)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{phase} schedules", total=total)
            bar.update(tasks[phase], completed=done)

        report = run(config, progress=progress)
    report.render(console)
    if json_path is not None:
        report.write_json(json_path)
        console.print(f"report written to {json_path}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)

"""``payweave demo``: the whole product on embedded defaults (see :mod:`payweave.core.demo`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .app import app, console, err_console


@app.command("demo")
def demo_command(
    fast: Annotated[bool, typer.Option("--fast", help="Skip the history: the BC sandbox holds only the last 12 months.")] = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the demo's SQLite database, payweave.toml and log go (default: a new "
                     "temporary directory, kept after the demo).", file_okay=False),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running/--no-keep-running",
                           help="Keep the service and the sandboxes running after the demo until Ctrl-C."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the BC sandbox's data and the PSP sandbox's ids.")] = 7,
) -> None:
    """Run the demo: BC sandbox, Stripe-shaped PSP and payweave on loopback, real flows, checked outcomes."""
    from payweave.core.demo import DemoFailed, DemoOptions, DemoUsageError, run_demo

    try:
        run_demo(DemoOptions(directory=directory, fast=fast, seed=seed, keep_running=keep_running), console)
    except DemoUsageError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except DemoFailed as exc:
        err_console.print(f"[bold red]demo failed:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None

"""``payweave conformance PLUGIN``: run the PSP plugin conformance suite (docs/conformance.md),
and ``payweave new-plugin NAME``: write a PSP plugin that passes it."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .app import app, console, err_console


@app.command("conformance")
def conformance_command(
    plugin: Annotated[str, typer.Argument(help="Entry-point name of the PSP plugin, e.g. psp_mock.")],
    profile: Annotated[
        str | None, typer.Option("--profile", help="Shorthand for --setting profile=NAME (plugins with capability profiles).")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", "-s", help="KEY=VALUE override of the conformance account's settings (repeatable)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail any skipped applicable test that has no written reason.")
    ] = False,
    json_file: Annotated[
        str | None, typer.Option("--json", metavar="FILE", help="Also write the report as JSON to FILE ('-': stdout).")
    ] = None,
    keyword: Annotated[str | None, typer.Option("-k", help="Only tests matching this pytest -k expression.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every test, not only failures.")] = False,
    exitfirst: Annotated[bool, typer.Option("--exitfirst", "-x", help="Stop at the first failure.")] = False,
) -> None:
    """Prove each declared capability of PLUGIN, check each undeclared one is refused, and check
    the contract every plugin keeps. Exit code 1 on any failure."""
    from payweave.core.conformance.report import render
    from payweave.core.conformance.runner import run_conformance

    settings = list(setting or [])
    if profile:
        settings.insert(0, f"profile={profile}")
    extra: list[str] = []
    if keyword:
        extra += ["-k", keyword]
    if verbose:
        extra.append("-v")
    if exitfirst:
        extra.append("-x")
    to_stdout = json_file == "-"
    out: Console = err_console if to_stdout else console
    # pytest's own progress goes to stderr when stdout carries the JSON report
    redirect = contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext()
    with redirect:
        report = run_conformance(
            plugin,
            setting_args=settings,
            strict=strict,
            json_path=None if to_stdout or json_file is None else Path(json_file),
            pytest_args=extra,
            quiet=not verbose,
        )
    render(report, out)
    if to_stdout:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
    raise typer.Exit(0 if report.ok else (report.exit_code or 1))


@app.command("new-plugin")
def new_plugin_command(
    name: Annotated[str, typer.Argument(help="Plugin (entry-point and package) name, e.g. acme_pay.")],
    directory: Annotated[
        Path | None, typer.Option("--directory", "-d", help="Where to write it (default: ./payweave-plugin-NAME).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Human name shown in tables (default: from NAME).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into an existing, non-empty directory.")] = False,
) -> None:
    """Write a minimal PSP plugin (pyproject, hooks, settings, a stand-in PSP API, conformance
    environment and test) that passes `payweave conformance NAME` once installed."""
    from payweave.core.conformance.templates import TemplateError, placeholders, render_plugin

    try:
        target = directory or Path.cwd() / placeholders(name)["{{dist}}"]
        files = render_plugin(name, target, title=title, force=force)
    except TemplateError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(escape(f"Wrote {len(files)} files to {target}"), highlight=False, soft_wrap=True)
    for path in files:
        console.print(escape(f"  {path.relative_to(target)}"), highlight=False, soft_wrap=True)
    console.print(
        escape(f"Next: pip install -e '{target}[test]' && payweave conformance {name}"), highlight=False, soft_wrap=True
    )

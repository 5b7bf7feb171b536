"""``payweave plugins``: what is installed, loaded, broken, and what each PSP can do."""
from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from payweave.core.plugins import LoadedPlugin, PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import PayweaveError

from .app import app, console


def _capabilities(manager: PluginManager, record: LoadedPlugin) -> PspCapabilities | None:
    if record.status != "active" or record.kind != "psp":
        return None
    try:
        account = manager.account(record.name)
        return manager.psp(record.name).capabilities(account)
    except PayweaveError:
        return None


def plugin_report(manager: PluginManager) -> list[dict]:
    report = []
    for record in manager.plugins():
        caps = _capabilities(manager, record)
        report.append(
            {
                "name": record.name,
                "distribution": record.distribution,
                "version": record.version,
                "kind": record.kind if record.info else None,
                "status": record.status,
                "error": record.error.message if record.error else None,
                "hooks": record.hooks,
                "capabilities": caps.model_dump(mode="json") if caps else None,
                "features": caps.matrix() if caps else None,
            }
        )
    return report


@app.command("plugins")
def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List plugins (name, distribution and version, kind, status) and the PSP capability matrix."""
    manager = PluginManager(PayweaveSettings())
    manager.load_entrypoints()
    report = plugin_report(manager)
    if as_json:
        typer.echo(json.dumps({"plugins": report}, indent=2))
        raise typer.Exit(1 if any(p["status"] == "broken" for p in report) else 0)

    table = Table(title="payweave plugins")
    for column in ("name", "distribution", "version", "kind", "status"):
        table.add_column(column)
    for p in report:
        status = {"active": "[green]active[/]", "broken": "[red]broken[/]"}.get(p["status"], p["status"])
        table.add_row(p["name"], p["distribution"], p["version"], p["kind"] or "?", status)
    console.print(table)

    psps = [p for p in report if p["features"]]
    if psps:
        matrix = Table(title="PSP capabilities")
        matrix.add_column("feature")
        for p in psps:
            matrix.add_column(p["name"], justify="center")
        for feature in Feature:
            matrix.add_row(feature.title, *("[green]yes[/]" if p["features"][feature.value] else "[dim]no[/]" for p in psps))
        console.print(matrix)
    for p in report:
        if p["error"]:
            console.print(f"[red]error:[/] {p['error']}", highlight=False)
    if any(p["status"] == "broken" for p in report):
        raise typer.Exit(1)

"""The Typer application object and shared CLI helpers."""
from __future__ import annotations

import importlib.metadata as md
import sys
from typing import Annotated

import typer
from rich.console import Console

from payweave.core import logging as pw_logging
from payweave.core.settings import PayweaveSettings

app = typer.Typer(
    name="payweave",
    help=(
        "payweave: payment integration between Microsoft Dynamics 365 Business Central and payment "
        "service providers.\n\nStart with `payweave demo`. Configuration comes from PAYWEAVE_* "
        "environment variables and an optional payweave.toml (PAYWEAVE_CONFIG)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

DISTRIBUTIONS = [
    "payweave",
    "payweave-hooks",
    "payweave-psp-mock",
    "payweave-psp-stripe-like",
    "payweave-erp-businesscentral",
]


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _version_callback(value: bool) -> None:
    if value:
        for name, version in versions().items():
            console.print(f"{name} {version}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the versions of all payweave distributions.")
    ] = False,
) -> None:
    settings = PayweaveSettings()
    pw_logging.configure(settings.log_format, settings.log_level)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

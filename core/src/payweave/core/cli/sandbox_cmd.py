"""Sandbox servers shipped by plugins (``payweave_sandboxes``): ``payweave <command>``.

``payweave sandbox list`` shows them; each also gets its own top-level command
(``payweave stripe-sandbox``, ``payweave bc-sandbox``) registered at start-up.
"""
from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings

from .app import app, console

sandbox_app = typer.Typer(help="Serve the sandbox servers that plugins ship.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


def _manager() -> PluginManager:
    manager = PluginManager(PayweaveSettings())
    manager.load_entrypoints()
    return manager


@sandbox_app.command("list")
def sandbox_list() -> None:
    """List the sandboxes of the loaded plugins."""
    for plugin, spec in _manager().sandboxes():
        console.print(f"[bold]{spec.command}[/] ({plugin}): {spec.description}")


@sandbox_app.command("serve")
def sandbox_serve(
    command: Annotated[str, typer.Argument(help="The sandbox's command name, e.g. stripe-sandbox.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = the sandbox's default).")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve one sandbox under uvicorn."""
    for _plugin, spec in _manager().sandboxes():
        if spec.command == command:
            chosen = port or spec.default_port or 8790
            console.print(f"{spec.description} on http://{host}:{chosen}")
            uvicorn.run(spec.app_factory(), host=host, port=chosen, log_level="info")
            return
    raise typer.BadParameter(f"no sandbox named {command!r}; see `payweave sandbox list`")


def _make_alias(command: str, description: str) -> None:
    @app.command(command, help=f"Serve {description} (same as `payweave sandbox serve {command}`).")
    def _serve(
        port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 0,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    ) -> None:
        sandbox_serve(command, port, host)


# The two sandboxes the built-in plugins ship get first-class commands; a third-party sandbox
# is reachable through `payweave sandbox serve NAME`.
_make_alias("stripe-sandbox", "the Stripe-shaped PSP sandbox")
_make_alias("bc-sandbox", "the Business Central API v2.0 sandbox")

"""``payweave keys``: API keys of BC companies for the HTTP service (shown once, stored hashed)."""
from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from payweave.core.settings import PayweaveSettings
from payweave.hooks.errors import PayweaveError

from .app import app, console, err_console

keys_app = typer.Typer(help="Create, list and revoke API keys (one BC company each).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keys():  # type: ignore[no-untyped-def]
    from payweave.core.service.apikeys import ApiKeys
    from payweave.core.store import Store
    from payweave.core.store import service_models  # noqa: F401

    settings = PayweaveSettings()
    return ApiKeys(Store(settings.database_url), settings.api_key_pepper.get_secret_value())


@keys_app.command("create")
def create_key(
    company: Annotated[str, typer.Option("--company", "-c", help="The BC company the key is bound to.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by (e.g. 'BC production').")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a key for COMPANY and print it once; only its hash is stored."""
    keys = _keys()
    try:
        created = keys.create(company, name=name)
    except PayweaveError as exc:
        err_console.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        keys.store.dispose()
    if as_json:
        typer.echo(json.dumps({"id": created.key.id, "company_id": created.key.company_id, "name": created.key.name,
                               "key": created.secret}))
        return
    console.print(f"API key {created.key.id} for company {created.key.company_id} created.", highlight=False)
    console.print("Store it now; it is not shown again:", highlight=False)
    typer.echo(created.secret)


@keys_app.command("list")
def list_keys(
    company: Annotated[str | None, typer.Option("--company", "-c", help="Only this company's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = _keys()
    try:
        found = keys.list(company)
    finally:
        keys.store.dispose()
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in found]))
        return
    table = Table(title="API keys")
    for column in ("id", "company", "name", "created", "last used", "status"):
        table.add_column(column)
    for k in found:
        table.add_row(k.id, k.company_id, k.name, k.created_at.strftime("%Y-%m-%d %H:%M"),
                      k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "-",
                      "[red]revoked[/]" if k.revoked_at else "[green]active[/]")
    console.print(table)


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id (or the whole key).")]) -> None:
    """Revoke a key: requests with it are refused from now on."""
    keys = _keys()
    try:
        revoked = keys.revoke(key_id)
    except PayweaveError as exc:
        err_console.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        keys.store.dispose()
    console.print(f"API key {revoked.id} of company {revoked.company_id} is revoked.", highlight=False)

"""ERP sync commands: ``payweave connect``, ``payweave sync``, ``payweave status``,
``payweave accounts``.

The database is ``PAYWEAVE_DATABASE_URL``; the ERP account comes from ``[accounts.<plugin>.<name>]``
in payweave.toml or the plugin's own environment (``PAYWEAVE_BC_*`` for Business Central), with
``--set key=value`` overrides (non-secret overrides are remembered for later runs; secrets never
are). Sync settings: ``PAYWEAVE_SYNC_*`` (page size, PDF scope...).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from payweave.core.jobs.queue import JobQueue
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.core.store import Store
from payweave.core.sync import ErpSyncService, ProgressEvent, SyncSettings
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import SyncEntity

from .app import app, console, err_console

PHASE_TITLES = {"recent": "last 12 months", "history": "history", "delta": "changes", "full": "full re-read"}


def _service() -> ErpSyncService:
    """The sync service on the configured store, with the job queue: what the CLI starts (the
    next fallback poll, subscription renewals, waiting write-backs) is left to `payweave worker`."""
    settings = PayweaveSettings()
    manager = PluginManager(settings)
    manager.load_entrypoints()
    store = Store(settings.database_url)
    return ErpSyncService(store, manager, settings=SyncSettings(), queue=JobQueue(store, settings=settings.jobs),
                          public_base_url=settings.service.public_base_url)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except PayweaveError as exc:
        err_console.print(f"[red]error[/] {escape(f'[{exc.code}] {exc.message}')}", highlight=False)
        raise typer.Exit(1) from None


def _company(service: ErpSyncService, company: str | None) -> str:
    if company:
        return company
    connections = service.connections()
    if len(connections) == 1:
        return connections[0].company_id
    if not connections:
        err_console.print("No company is connected yet: run `payweave connect`.")
    else:
        err_console.print("Several companies are connected; choose one with --company: "
                          + ", ".join(c.company_id for c in connections))
    raise typer.Exit(1)


def _parse_sets(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


class ProgressBars:
    """Rich progress bars, one per (phase, entity): records, pages, rate, elapsed. The ERP does
    not say how many records a window holds, so the bars pulse until the stream ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def _task(self, phase: str, entity: str) -> TaskID:
        key = (phase, entity)
        if key not in self.tasks:
            title = f"{PHASE_TITLES.get(phase, phase):<15} {entity.replace('_', ' ')}"
            self.tasks[key] = self.progress.add_task(title, total=None, records=0, pages=0, rate=0.0)
        return self.tasks[key]

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "phase":
            self.progress.console.print(f"[bold]{PHASE_TITLES.get(event.phase, event.phase).capitalize()}[/] "
                                        f"(status: {event.status})", highlight=False)
        elif event.kind == "status":
            colour = {"connected": "green", "error": "red"}.get(event.status, "yellow")
            note = f": {escape(event.note)}" if event.note else ""
            self.progress.console.print(f"Status: [{colour}]{event.status.capitalize()}[/]{note}", highlight=False)
        elif event.kind in ("page", "pdf"):
            task = self._task(event.phase, event.entity)
            self.progress.update(task, records=event.records, pages=event.pages, rate=event.rate)
        elif event.kind == "stream_done":
            task = self._task(event.phase, event.entity)
            fields: dict[str, Any] = {"records": event.records, "pages": event.pages, "rate": event.rate}
            if event.note:
                self.progress.update(task, description=f"{self.progress.tasks[task].description} ({event.note})")
            self.progress.update(task, total=1, completed=1, **fields)


@contextmanager
def _bars(enabled: bool) -> Iterator[ProgressBars | None]:
    if not enabled:
        yield None
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.fields[records]:>8} records"), TextColumn("{task.fields[pages]:>5} pages"),
        TextColumn("{task.fields[rate]:>7.0f}/s"), TimeElapsedColumn(), console=console, transient=False,
    )
    with progress:
        yield ProgressBars(progress)


@app.command("connect", rich_help_panel="ERP sync")
def connect_cmd(
    company: Annotated[str | None, typer.Option("--company", help="ERP company id (listed when omitted and several exist).")] = None,
    plugin: Annotated[str | None, typer.Option(help="ERP plugin (default: the only one loaded).")] = None,
    account: Annotated[str, typer.Option(help="Account name in [accounts.<plugin>.<name>].")] = "default",
    as_company: Annotated[str | None, typer.Option("--as", help="payweave's company key (default: the ERP company id).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Account setting KEY=VALUE (repeatable).")] = [],  # noqa: B006
    currency: Annotated[str | None, typer.Option(help="Currency for ERP records that carry none (BC: blank = local).")] = None,
    no_sync: Annotated[bool, typer.Option("--no-sync", help="Only record the connection (Pending); a worker syncs.")] = False,
    subscribe: Annotated[bool, typer.Option("--subscribe", help="Subscribe to the ERP's webhooks at "
                                            "PAYWEAVE_SERVICE__PUBLIC_BASE_URL (it must reach payweave).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON, no progress bars.")] = False,
) -> None:
    """Connect an ERP company: status Pending, initial sync (last 12 months, then all history), Connected."""
    with _errors():
        service = _service()
        with _bars(not json_out and not no_sync) as bars:
            view = service.connect(plugin=plugin, account_name=account, erp_company_id=company, company_id=as_company,
                                   overrides=_parse_sets(set_), default_currency=currency, run_initial=not no_sync,
                                   progress=bars)
        if subscribe:
            service.ensure_subscriptions(view.company_id)
            view = service.connection(view.company_id)
    if json_out:
        console.print_json(view.model_dump_json())
        return
    console.print(f"{escape(view.erp_company_name or view.erp_company_id)} ({view.company_id}): "
                  f"[bold]{view.status.capitalize()}[/]", highlight=False)
    if view.status == "connected" and service.account_setup(view.company_id) is None:
        console.print("Next: choose the accounts for payments and deposits with `payweave accounts`.")


@app.command("sync", rich_help_panel="ERP sync")
def sync_cmd(
    company: Annotated[str | None, typer.Option("--company", help="payweave company key (default: the only one).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-read every record (repair), then the changes.")] = False,
    entity: Annotated[list[str], typer.Option("--entity", help="Only these entities (delta), e.g. invoices.")] = [],  # noqa: B006
    writebacks: Annotated[bool, typer.Option(help="Also retry pending write-backs (payments, deposits).")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON, no progress bars.")] = False,
) -> None:
    """Sync now: finish the initial sync if it is still Pending, else read the changes."""
    with _errors():
        service = _service()
        company_id = _company(service, company)
        entities = [SyncEntity(e) for e in entity] if entity else None
        with _bars(not json_out) as bars:
            report = service.run_sync(company_id, full=full, entities=entities, progress=bars)
        retried = service.process_pending_writebacks(company_id) if writebacks else []
    if json_out:
        out = report.as_json()
        out["writebacks"] = [json.loads(v.model_dump_json()) for v in retried]
        console.print_json(json.dumps(out))
        return
    console.print(f"{company_id}: [bold]{report.status.capitalize()}[/], "
                  f"{report.records()} records read, {report.pdfs} PDFs stored.", highlight=False)
    for view in retried:
        console.print(escape(f"write-back {view.document_number} ({view.kind}): {view.status}"
                             + (f" - {view.last_error}" if view.last_error and view.status != "posted" else "")),
                      highlight=False)


@app.command("status", rich_help_panel="ERP sync")
def status_cmd(
    company: Annotated[str | None, typer.Option("--company", help="payweave company key (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Connection status, phase, counts, last sync, cursor high-water marks and account setup."""
    with _errors():
        service = _service()
        companies = [company] if company else [c.company_id for c in service.connections()]
        statuses = [service.status(c) for c in companies]
    if json_out:
        console.print_json(json.dumps([json.loads(s.model_dump_json()) for s in statuses]))
        return
    if not statuses:
        console.print("No company is connected yet: run `payweave connect`.")
        return
    for st in statuses:
        c = st.connection
        colour = {"connected": "green", "error": "red"}.get(c.status, "yellow")
        head = Table.grid(padding=(0, 2))
        head.add_row("Company", escape(f"{c.erp_company_name or c.erp_company_id} ({c.company_id}) via {c.plugin}"))
        head.add_row("Status", f"[{colour}]{c.status.capitalize()}[/]"
                     + (escape(f": {c.status_reason}") if c.status_reason else ""))
        head.add_row("Phase", c.phase)
        head.add_row("Last sync", escape(f"{c.last_sync_finished_at or '-'} ({c.last_sync_outcome or 'never'})"
                                         + (f" [{c.last_error_code}] {c.last_error}" if c.last_error else "")))
        head.add_row("Webhooks", f"until {c.subscriptions_expire_at}" if c.subscriptions_expire_at
                     else escape(c.subscriptions_error or "not subscribed (delta polling)"))
        head.add_row("Counts", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in st.counts.items()))
        head.add_row("Invoices", ", ".join(f"{k} {v}" for k, v in sorted(st.invoices_by_status.items())) or "-")
        head.add_row("Write-backs", ", ".join(f"{k} {v}" for k, v in sorted(st.writebacks_by_status.items())) or "-")
        if st.document_events_by_status:
            head.add_row("Document events", ", ".join(f"{k} {v}" for k, v in sorted(st.document_events_by_status.items())))
        if st.open_issues:
            head.add_row("Issues", f"[red]{st.open_issues} record(s) could not be stored[/]")
        setup = st.account_setup
        head.add_row("Accounts", "not set up (`payweave accounts`)" if setup is None else
                     f"payments {setup.payments_account.number}, bank {setup.bank_account.number}, "
                     f"fees {setup.fee_account.number}")
        console.print(head)
        table = Table(title="Cursors", show_lines=False)
        for col in ("stream", "entity", "state", "high-water mark", "pages", "records", "resumable"):
            table.add_column(col)
        for cur in st.cursors:
            table.add_row(cur.stream, cur.entity, cur.state, str(cur.high_water or "-"), str(cur.pages),
                          str(cur.records), "yes" if cur.resumable else "")
        console.print(table)


@app.command("accounts", rich_help_panel="ERP sync")
def accounts_cmd(
    company: Annotated[str | None, typer.Option("--company", help="payweave company key (default: the only one).")] = None,
    payments: Annotated[str | None, typer.Option(help="G/L account (number or id) that records payments.")] = None,
    bank: Annotated[str | None, typer.Option(help="Bank account (number or id) that receives payouts.")] = None,
    fee: Annotated[str | None, typer.Option(help="G/L account (number or id) for PSP fees.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the ERP's accounts and the account setup, or set it (all three options together)."""
    with _errors():
        service = _service()
        company_id = _company(service, company)
        given = [v for v in (payments, bank, fee) if v]
        if given and len(given) != 3:
            raise typer.BadParameter("give --payments, --bank and --fee together")
        if given:
            view = service.set_account_setup(company_id, payments_account=payments or "", bank_account=bank or "",
                                             fee_account=fee or "", actor="cli")
            if json_out:
                console.print_json(view.model_dump_json())
            else:
                console.print(f"Saved: payments {view.payments_account.number}, bank {view.bank_account.number}, "
                              f"fees {view.fee_account.number}.", highlight=False)
            return
        ledger = service.ledger_accounts(company_id)
        setup = service.account_setup(company_id)
    if json_out:
        console.print_json(json.dumps({"accounts": [a.model_dump(mode="json") for a in ledger],
                                       "setup": json.loads(setup.model_dump_json()) if setup else None}))
        return
    table = Table(title="ERP accounts")
    for col in ("kind", "number", "name", "category", "blocked"):
        table.add_column(col)
    for a in sorted(ledger, key=lambda a: (a.kind, a.number)):
        table.add_row(a.kind.replace("_", " "), escape(a.number), escape(a.name), escape(a.category),
                      "blocked" if a.blocked else "")
    console.print(table)
    console.print("Account setup: " + ("none yet (`payweave accounts --payments N --bank N --fee N`)" if setup is None
                  else f"payments {setup.payments_account.number}, bank {setup.bank_account.number}, "
                  f"fees {setup.fee_account.number}"), highlight=False)

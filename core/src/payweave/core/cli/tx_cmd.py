"""``payweave tx``: inspect payment transactions and their audit trail."""
from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from payweave.core.engine import PaymentEngine, TransactionView
from payweave.core.settings import PayweaveSettings
from payweave.hooks.errors import PayweaveError

from .app import app, console, err_console

tx_app = typer.Typer(help="Payment transactions: their amounts, operations and history.", no_args_is_help=True)
app.add_typer(tx_app, name="tx")

CompanyOption = Annotated[
    str | None,
    typer.Option("--company", "-c", help="Company id; without it, transactions of every company (operator view)."),
]


def open_engine() -> PaymentEngine:
    return PaymentEngine.from_settings(PayweaveSettings())


def fail(exc: PayweaveError) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc.message} [dim]({exc.code})[/]", highlight=False)
    return typer.Exit(1)


def _amount(value: object, currency: str) -> str:
    return "" if value is None else f"{value} {currency}"


def print_transaction(view: TransactionView) -> None:
    head = Table(title=f"Transaction {view.id}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    a = view.amounts
    for label, value in (
        ("company", view.company_id),
        ("document", f"{view.document_type.value} {view.document_number} ({view.document_id})"),
        ("payment method", f"{view.payment_method_code} -> {view.psp} / {view.psp_account}"),
        ("status", view.status.value),
        ("origin", view.origin + (", without cart" if view.no_cart else "") + (", AutoCapture" if view.auto_capture else "")),
        ("PSP reference", view.psp_reference or ""),
        ("amount", _amount(view.amount, view.currency)),
        ("authorized", _amount(a.authorized, view.currency)),
        ("captured", _amount(a.captured, view.currency)),
        ("voided / expired", f"{a.voided} / {a.expired} {view.currency}"),
        ("refunded / credited", f"{a.refunded} / {a.credited} {view.currency}"),
        ("still capturable", _amount(a.capturable, view.currency)),
        ("refundable", _amount(a.refundable, view.currency)),
        ("reservation expires", view.expires_at.isoformat() if view.expires_at else ""),
    ):
        head.add_row(label, str(value))
    console.print(head)
    if view.operations:
        console.print("[bold]PSP operations[/]")
        for op in view.operations:
            outcome = escape(f"{op.status}" + (f": {op.error_message}" if op.error_message else ""))
            console.print(
                f"  #{op.seq} {op.kind} {_amount(op.amount, op.currency) or '(all reserved)'} - {outcome}"
                f" [dim](by {escape(op.actor)}, {op.trigger}; key {op.idempotency_key}; attempts {op.attempts}"
                + (f"; PSP op {escape(op.operation_reference)}" if op.operation_reference else "")
                + ")[/]",
                highlight=False,
                soft_wrap=True,
            )
    console.print("[bold]History[/]")
    for h in view.history:
        status = f" {h.from_status or ''} -> {h.to_status}" if h.to_status else ""
        amount = f" {_amount(h.amount, view.currency)}" if h.amount is not None else ""
        console.print(
            f"  {h.at.strftime('%Y-%m-%d %H:%M:%S')} {escape(h.action)} {escape(h.outcome)}{escape(status)}{amount} "
            f"[dim](by {escape(h.actor)}{', ' + escape(h.trigger) if h.trigger else ''})[/]",
            highlight=False,
            soft_wrap=True,
            markup=True,
        )
        if h.message:
            console.print(f"      {h.message}", highlight=False, soft_wrap=True, markup=False)


@tx_app.command("show")
def show(
    transaction_id: Annotated[str, typer.Argument(help="The transaction id.")],
    company: CompanyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one transaction: amounts, PSP operations (with idempotency keys) and its history."""
    engine = open_engine()
    try:
        view = engine.get_transaction(company, transaction_id) if company else engine.find_transaction(transaction_id)
    except PayweaveError as exc:
        raise fail(exc) from None
    finally:
        engine.store.dispose()
    if as_json:
        typer.echo(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    print_transaction(view)


@tx_app.command("list")
def list_(
    company: CompanyOption = None,
    status: Annotated[str | None, typer.Option(help="Only transactions in this status.")] = None,
    document: Annotated[str | None, typer.Option(help="Only transactions of this document number.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List transactions, newest first."""
    engine = open_engine()
    try:
        views = engine.list_transactions(company, status=status, document_number=document, limit=limit)
    except (PayweaveError, ValueError) as exc:
        if isinstance(exc, PayweaveError):
            raise fail(exc) from None
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        engine.store.dispose()
    if as_json:
        typer.echo(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    if not views:
        console.print("no transactions")
        return
    for v in views:
        a = v.amounts
        console.print(
            f"{v.id}  {escape(v.company_id)}  {escape(v.document_number)}  {v.status.value}  "
            f"authorized {_amount(a.authorized, v.currency)}  captured {_amount(a.captured, v.currency)}  "
            f"paid back {_amount(a.refunded + a.credited, v.currency)}  [dim]{v.psp}/{v.psp_account}[/]",
            highlight=False,
            soft_wrap=True,
        )

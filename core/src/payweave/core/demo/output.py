"""How the demo tells its story on the terminal (Rich): one line per step, labelled with who acts."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

ACTORS = {
    "bcdata": ("BC", "blue"),
    "bc": ("BC user", "blue"),
    "ext": ("BC extension", "cyan"),
    "pull": ("sync (pull)", "magenta"),
    "customer": ("customer", "yellow"),
    "psp": ("PSP", "bright_black"),
    "payweave": ("payweave", "green"),
    "clock": ("clock", "bright_yellow"),
    "scheduler": ("scheduler", "green"),
    "check": ("check", "bold green"),
}
WIDTH = max(len(label) for label, _ in ACTORS.values())


def fmt(amount: Decimal | str | int | None, currency: str = "") -> str:
    """``1234.5`` -> ``1,234.50 USD`` (two decimals or the currency's, whichever the value has)."""
    if amount is None:
        return "-"
    value = Decimal(str(amount))
    text = f"{value:,.2f}" if value == value.quantize(Decimal("0.01")) else f"{value:,}"
    return f"{text} {currency}".strip()


@dataclass
class FlowRecord:
    """One row of the closing summary."""

    flow: str
    documents: str
    psp: str
    transaction_id: str
    status: str
    amounts: str
    written_to_bc: str


class Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console

    def print(self, text: str = "", **kw: object) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, **kw)  # type: ignore[arg-type]

    def title(self, text: str, subtitle: str) -> None:
        self.console.print(Panel(f"[bold]{escape(text)}[/]\n{escape(subtitle)}", expand=False), highlight=False)

    def section(self, number: int, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{number}. {escape(title)}[/]", align="left")

    def say(self, actor: str, text: str) -> None:
        label, colour = ACTORS[actor]
        self.print(f"  [{colour}]{label:<{WIDTH}}[/]  {escape(text)}")

    def ok(self, text: str) -> None:
        self.print(f"  [bold green]{'✓ check':<{WIDTH}}[/]  {escape(text)}")

    def note(self, text: str) -> None:
        self.print(f"  {'':<{WIDTH}}  [dim]{escape(text)}[/]")

    def refusal(self, code: str, sentence: str) -> None:
        self.console.print(Panel(f"{escape(sentence)}\n\n[dim]code[/] [bold]{escape(code)}[/]",
                                 title="the error the BC user sees", border_style="red", expand=False,
                                 padding=(0, 2)), highlight=False)

    def summary(self, rows: list[FlowRecord]) -> None:
        """The closing table; on a wide terminal the transaction ids stay whole (what `payweave tx
        show` takes; they are also printed with each flow)."""
        table = Table(title="What the demo did (amounts in USD)", show_lines=True, title_justify="left")
        for col in ("flow / PSP", "BC documents", "transaction", "status", "amounts", "written to BC"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(f"{escape(r.flow)}\n[dim]{escape(r.psp)}[/]", escape(r.documents), escape(r.transaction_id),
                          escape(r.status.replace("_", " ")), escape(r.amounts), escape(r.written_to_bc))
        self.console.print(table)


__all__ = ["FlowRecord", "Narrator", "fmt"]

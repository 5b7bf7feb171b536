"""``payweave demo``: start everything, run the flows, summarise, leave the database behind."""
from __future__ import annotations

import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from payweave.core.cli.app import versions

from .errors import DemoFailed, DemoUsageError
from .flows import DemoFlows
from .output import Narrator
from .stack import COMPANY, FAST, FULL, DemoStack


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None
    fast: bool = False
    seed: int = 7
    keep_running: bool = False


@dataclass
class DemoResult:
    directory: Path
    seconds: float
    transactions: list[str]


def _follow_up(out: Narrator, stack: DemoStack, transactions: list[str]) -> None:
    config = stack.config_path.resolve()
    out.print()
    out.print("[bold]The database stays for you to explore[/] (the sandboxes stop with the demo):")
    out.print(f"  export PAYWEAVE_CONFIG={config}", markup=False)
    out.print(f"  # or: export PAYWEAVE_DATABASE_URL=sqlite:///{stack.db_path.resolve().as_posix()}", markup=False)
    out.print("  payweave status", markup=False)
    out.print("  payweave tx list", markup=False)
    if transactions:
        out.print(f"  payweave tx show {transactions[0]}", markup=False)
    out.print("  payweave jobs list", markup=False)


def _serve_until_interrupted(out: Narrator, stack: DemoStack) -> None:
    out.print()
    out.print("[bold]Still running[/] (--keep-running); Ctrl-C stops everything:")
    out.print(f"  payweave service  {stack.pw_url}  (API docs {stack.pw_url}/docs, dashboard {stack.pw_url}/ui)",
              markup=False)
    out.print(f"  BC sandbox        {stack.bc_server.url}", markup=False)
    out.print(f"  Stripe sandbox    {stack.stripe_server.url}", markup=False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    """Run the demo; raises :class:`DemoFailed` (an outcome did not hold) or
    :class:`DemoUsageError` (cannot start as asked)."""
    started = time.monotonic()
    directory = (options.directory or Path(tempfile.mkdtemp(prefix="payweave-demo-"))).resolve()
    sizes = FAST if options.fast else FULL
    out = Narrator(console)
    stack = DemoStack(directory, seed=options.seed, sizes=sizes)
    stack.prepare_directory()
    vers = versions()
    out.title("payweave demo" + (" --fast" if options.fast else ""),
              f"payweave {vers['payweave']} with Business Central, a Stripe-shaped PSP and psp_mock, all on this machine")
    try:
        with console.status("Seeding the BC sandbox and starting the services..."):
            stack.start_bc()
            stack.start_psp_and_service()
        out.print(f"  directory          {directory}  (SQLite payweave.db, logs in payweave-demo.log)", markup=False)
        out.print(f"  BC sandbox         {stack.bc_server.url}  (API v2.0, companion API, OAuth2, webhooks)", markup=False)
        out.print(f"  Stripe-shaped PSP  {stack.stripe_server.url}  (signed webhooks to payweave)", markup=False)
        out.print("  psp_mock           in process (capability profile 'full')", markup=False)
        out.print(f"  payweave service   {stack.pw_url}  (/v1 API, webhooks, /pay redirects; in-process job worker)",
                  markup=False)
        flows = DemoFlows(stack, out)
        flows.connect()
        flows.set_up()
        flows.sales_order()
        paid = flows.payment_link()
        flows.credit_memo(paid)
        flows.recurring()
        flows.refused()
        flows.payout()
        flows.late_capture()
        flows.final_checks()
        stack.write_config()
        status = stack.sync.status(COMPANY)
        out.print()
        out.summary(flows.records)
        written = ", ".join(f"{w.kind} {w.document_number}" for w in flows.writebacks)
        out.print(f"Written to BC: {len(flows.writebacks)} entries ({written}); BC documents handled through the sync: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(status.document_events_by_status.items())))
        elapsed = time.monotonic() - started
        transactions = [r.transaction_id for r in flows.records if len(r.transaction_id) == 36]
        out.print(f"[bold green]All {flows.flows_run} flows held[/] in {elapsed:.1f} s.")
        _follow_up(out, stack, transactions)
        if options.keep_running:
            _serve_until_interrupted(out, stack)
        return DemoResult(directory, elapsed, transactions)
    finally:
        stack.stop()


__all__ = ["DemoFailed", "DemoOptions", "DemoResult", "DemoUsageError", "run_demo"]

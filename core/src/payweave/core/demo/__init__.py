"""``payweave demo``: the whole product on embedded defaults, the README's first command.

It seeds a Business Central sandbox, connects it (Pending, the last 12 months, the history,
Connected), sets up accounts and payment methods, and runs real flows through the engine, the
plugins, the HTTP service, the job worker and the sync: a sales order reserved, partly cancelled
and captured on posting; an invoice paid through a payment link; a credit memo refunded partly;
a recurring charge on a mandate; a document refused for an unsupported feature; a payout
recorded as a deposit; a late automatic capture fired by the scheduler. Every outcome is checked
against the PSP's ledger and BC; the database stays for ``payweave status`` and ``payweave tx``.

    from payweave.core.demo import DemoOptions, run_demo
    run_demo(DemoOptions(directory=Path("demo"), fast=True), console)
"""
from .errors import DemoFailed, DemoUsageError
from .runner import DemoOptions, DemoResult, run_demo

__all__ = ["DemoFailed", "DemoOptions", "DemoResult", "DemoUsageError", "run_demo"]

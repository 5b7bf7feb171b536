"""In-process PSP with configurable capabilities and a real ledger, for tests and demos.

One plugin stands for many PSPs: the account's settings pick a capability profile
(:data:`PROFILES`) plus per-field overrides. The mock keeps its own books per account
(:func:`ledger_for`), honours idempotency keys, expires reservations on its own clock, signs
webhooks, pays out with fees, and fails on demand (:class:`Fault`, decline tokens).

    from payweave.plugins.psp_mock import Fault, ledger_for
    ledger = ledger_for(account)
    ledger.inject(Fault.TIMEOUT_AFTER, operation="capture")
"""
from .clock import MockClock
from .ledger import (
    OPERATIONS,
    BalanceTransaction,
    Fault,
    MockLedger,
    MockLink,
    MockMandate,
    MockPayment,
    Operation,
    ledger_for,
    reset_ledger,
    reset_ledgers,
)
from .settings import PROFILES, MockPspSettings
from .version import __version__

__all__ = [
    "OPERATIONS",
    "PROFILES",
    "BalanceTransaction",
    "Fault",
    "MockClock",
    "MockLedger",
    "MockLink",
    "MockMandate",
    "MockPayment",
    "MockPspSettings",
    "Operation",
    "__version__",
    "deliver_webhooks",
    "ledger_for",
    "pending_webhooks",
    "reset_ledger",
    "reset_ledgers",
    "signed_webhook",
]


def __getattr__(name: str):  # the webhook helpers live with the hooks; import them lazily
    if name in {"signed_webhook", "pending_webhooks", "deliver_webhooks"}:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(name)

"""psp_mock's conformance environment (``payweave_conformance_environment``).

The account's capabilities come from ``PAYWEAVE_PSP_MOCK_*`` (profile and overrides); the
conformance suite may replace :attr:`account` with further ``--setting`` overrides, so every
method reads ``self.account`` when it runs. Each environment gets fresh random secrets and an
empty ledger, emptied again on exit.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import SecretStr

from payweave.hooks.conformance import ConformanceEnvironment
from payweave.hooks.models import Account, Customer, EventType, PaymentLinkResult, WebhookRequest

from . import webhooks
from .ledger import ledger_for, reset_ledger
from .settings import MockPspSettings


class MockConformanceEnvironment(ConformanceEnvironment):
    def __init__(self, account: Account) -> None:
        self.account = account

    @property
    def secrets(self) -> list[str]:  # type: ignore[override]
        settings = self.account.settings
        assert isinstance(settings, MockPspSettings)
        return [settings.api_key.get_secret_value(), settings.webhook_secret.get_secret_value()]

    def decline_token(self) -> str:
        return "decline"

    def approve_token(self) -> str | None:
        return "tok_mock_visa"

    def pending_token(self) -> str:
        return "requires_action"

    def complete_payment_link(self, link: PaymentLinkResult, outcome: Literal["paid", "cancelled"] = "paid") -> str | None:
        return ledger_for(self.account).complete_link(link.link_id, outcome)

    def create_mandate(self, customer: Customer) -> str:
        return ledger_for(self.account).create_mandate(customer.customer_id)

    def signed_webhook(self, event: EventType, psp_reference: str) -> WebhookRequest:
        ledger = ledger_for(self.account)
        raw_type = webhooks.RAW_TYPES[event]
        found = ledger.last_event(raw_type, psp_reference)
        if found is None:
            with ledger.lock:
                payment = ledger.payment(psp_reference)
                found = ledger.emit_payment(raw_type, payment, None)
        settings = self.account.settings
        assert isinstance(settings, MockPspSettings)
        return webhooks.sign(found, settings.webhook_secret.get_secret_value(), received_at=ledger.clock.now())

    def advance_time(self, seconds: float) -> None:
        ledger_for(self.account).advance(seconds)

    def run_payout(self) -> None:
        ledger_for(self.account).run_payout()

    def ledger_moves(self, psp_reference: str) -> dict[str, int]:
        return ledger_for(self.account).moves(psp_reference)


@contextmanager
def conformance_environment(
    account_name: str,
    *,
    plugin: str = "psp_mock",
    settings_model: type[MockPspSettings] = MockPspSettings,
    environment: type[MockConformanceEnvironment] = MockConformanceEnvironment,
) -> Iterator[MockConformanceEnvironment]:
    """A fresh ledger and fresh secrets for ``account_name``; other plugins built on psp_mock
    (test doubles) pass their own ``plugin`` name, settings model and environment class."""
    settings = settings_model(
        api_key=SecretStr(f"sk_mock_{secrets.token_hex(12)}"),
        webhook_secret=SecretStr(f"whsec_mock_{secrets.token_hex(16)}"),
    )
    account = Account(plugin=plugin, name=account_name, settings=settings)
    reset_ledger(account)
    try:
        yield environment(account)
    finally:
        reset_ledger(account)

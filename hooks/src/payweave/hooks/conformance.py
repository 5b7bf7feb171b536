"""What a PSP plugin gives the conformance suite (``payweave_conformance_environment``).

Subclass :class:`ConformanceEnvironment` and return it (inside a context manager) from your
plugin's ``payweave_conformance_environment`` hook. The suite drives the plugin only through
its hooks; this object supplies what a hook cannot: the account to use, how the "customer" acts
(complete a payment link, create a mandate), how to make a webhook the PSP would send, how to
make the PSP decline, and how to move the PSP's clock. Methods you cannot support may raise
``NotImplementedError(reason)``: the suite then skips the dependent test with that reason (in
strict mode only if the reason is given).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from .models import Account, Customer, EventType, PaymentLinkResult, WebhookRequest


class ConformanceEnvironment(ABC):
    #: The account the suite passes to every hook.
    account: Account
    #: Secret values (API keys, webhook secrets) that must never appear in logs or reprs.
    secrets: Sequence[str] = ()
    #: Written reasons for features the suite cannot prove here (strict mode needs one per skip).
    skip_reasons: dict[str, str] = {}

    @abstractmethod
    def decline_token(self) -> str:
        """A ``payment_method_token`` for ``ReserveRequest`` that makes the PSP decline."""

    def approve_token(self) -> str | None:
        """A token that makes the PSP approve (None: approve without a token)."""
        return None

    def pending_token(self) -> str:
        """A ``payment_method_token`` that leaves the reservation ``pending`` (the customer must
        still act, e.g. 3-D Secure), so the suite can change the cart of a prepared payment
        (``cart_update_before_reservation``). Without one the suite uses a payment link when
        ``pay_by_link`` is declared."""
        raise NotImplementedError("this environment has no token that leaves a payment pending")

    def complete_payment_link(self, link: PaymentLinkResult, outcome: Literal["paid", "cancelled"] = "paid") -> str | None:
        """Act as the customer on the hosted page; return the payment's psp_reference if paid."""
        raise NotImplementedError("this environment cannot complete payment links")

    def create_mandate(self, customer: Customer) -> str:
        """Create a mandate (saved payment method) for ``customer``; return its reference."""
        raise NotImplementedError("this environment cannot create mandates")

    def signed_webhook(self, event: EventType, psp_reference: str) -> WebhookRequest:
        """A webhook, signed as the PSP would sign it, reporting ``event`` for the payment."""
        raise NotImplementedError("this environment cannot produce webhooks")

    def advance_time(self, seconds: float) -> None:
        """Move the PSP's clock forward (reservation expiry)."""
        raise NotImplementedError("this environment cannot move the PSP's clock")

    def run_payout(self) -> None:
        """Make the PSP pay out the available balance now."""
        raise NotImplementedError("this environment cannot trigger payouts")

    def ledger_moves(self, psp_reference: str) -> dict[str, int]:
        """Count money movements the PSP recorded for a payment: ``{"captures": n, "refunds": n,
        "voids": n, "credits": n}``; the suite checks idempotency with it."""
        raise NotImplementedError("this environment cannot read the PSP's ledger")

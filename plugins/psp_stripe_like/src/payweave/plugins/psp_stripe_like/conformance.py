"""The conformance environment: the plugin against its own sandbox on loopback.

``payweave_conformance_environment`` returns :func:`sandbox_environment`; the suite gets an
account pointing at a fresh sandbox, and this object acts as the customer and the PSP
(hosted page, saved cards, signed webhooks, clock, payouts, ledger counts) through the
sandbox's ``/_sandbox`` control surface and its API, over real HTTP.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from payweave.hooks.conformance import ConformanceEnvironment
from payweave.hooks.models import Account, Customer, EventType, PaymentLinkResult, WebhookRequest

from .sandbox import SandboxSettings, create_app, signature_header
from .settings import StripeLikeSettings

#: Stripe event types that report each normalized event.
STRIPE_EVENT_TYPES: dict[EventType, tuple[str, ...]] = {
    EventType.AUTHORIZED: ("payment_intent.amount_capturable_updated",),
    EventType.CAPTURED: ("payment_intent.succeeded",),
    EventType.VOIDED: ("payment_intent.canceled",),
    EventType.REFUNDED: ("charge.refunded",),
    EventType.EXPIRED: ("charge.expired",),
    EventType.PAYMENT_FAILED: ("payment_intent.payment_failed",),
    EventType.LINK_COMPLETED: ("checkout.session.completed",),
    EventType.LINK_EXPIRED: ("checkout.session.expired",),
    EventType.PAYOUT_PAID: ("payout.paid",),
    EventType.PAYOUT_FAILED: ("payout.failed",),
}


class StripeSandboxEnvironment(ConformanceEnvironment):
    def __init__(self, base_url: str, account: Account, api_key: str, webhook_secret: str):
        self.base_url = base_url
        self.account = account
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self.secrets = (api_key, webhook_secret)
        self.skip_reasons = {
            "credit": "Stripe refunds are tied to a charge; cart-independent credits are not offered.",
            "partial_void": "Stripe cancels a PaymentIntent as a whole.",
            "multiple_captures": "Stripe's default single-capture mode; multicapture is a gated feature.",
            "cart_update_while_reserved": "An authorized Stripe PaymentIntent's amount cannot change.",
        }
        self._http = httpx.Client(base_url=base_url, timeout=10.0)

    def __repr__(self) -> str:
        return f"StripeSandboxEnvironment(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------
    def api(self, method: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from .formcodec import encode

        headers = {"Authorization": f"Bearer {self._api_key}"}
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._http.post(path, content=encode(params or {}), headers=headers)
        else:
            response = self._http.request(method, f"{path}?{encode(params)}" if params else path, headers=headers)
        response.raise_for_status()
        return response.json()

    def control(self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST") -> Any:
        response = self._http.request(method, f"/_sandbox{path}", json=body if method == "POST" else None)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox control {path} failed: {response.status_code} {response.text}")
        return response.json()

    # -- ConformanceEnvironment ---------------------------------------------------------
    def decline_token(self) -> str:
        return "pm_card_chargeDeclined"

    def approve_token(self) -> str | None:
        return "pm_card_visa"

    def pending_token(self) -> str:
        """A token whose payment waits for the customer (3D Secure): the reservation is pending."""
        return "pm_card_authenticationRequired"

    def complete_payment_link(self, link: PaymentLinkResult, outcome: Literal["paid", "cancelled"] = "paid") -> str | None:
        if outcome == "cancelled":
            self.control(f"/checkout/{link.link_id}/cancel")
            return None
        result = self.control(f"/checkout/{link.link_id}/complete", {"payment_method": "pm_card_visa"})
        return result["checkout_session"]["payment_intent"]

    def create_mandate(self, customer: Customer) -> str:
        stripe_customer = self.api(
            "POST", "/v1/customers",
            {"email": customer.email or None, "name": customer.name or None,
             "metadata": {"payweave_customer_id": customer.customer_id}},
        )  # fmt: skip
        setup = self.api(
            "POST", "/v1/setup_intents",
            {"customer": stripe_customer["id"], "payment_method": "pm_card_visa", "usage": "off_session", "confirm": True,
             "mandate_data": {"customer_acceptance": {"type": "offline"}}},
        )  # fmt: skip
        return setup["mandate"]

    def _find_event(self, types: tuple[str, ...], reference: str) -> dict[str, Any] | None:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"types": list(types), "limit": 100}
            if after:
                params["starting_after"] = after
            page = self.api("GET", "/v1/events", params)
            for event in page["data"]:
                obj = event["data"]["object"]
                if reference in (obj.get("id"), obj.get("payment_intent")):
                    return event
            if not page["has_more"]:
                return None
            after = page["data"][-1]["id"]

    def signed_webhook(self, event: EventType, psp_reference: str) -> WebhookRequest:
        types = STRIPE_EVENT_TYPES.get(event)
        if types is None:
            raise NotImplementedError(f"the Stripe-shaped PSP sends no event that maps to {event.value}")
        found = self._find_event(types, psp_reference)
        if found is None:
            raise NotImplementedError(
                f"the sandbox recorded no {' / '.join(types)} event for {psp_reference}; make the payment reach "
                "that state first"
            )
        body = json.dumps(found, indent=2).encode()
        now = int(time.time())
        return WebhookRequest(
            headers={"Stripe-Signature": signature_header(body, [self._webhook_secret], now),
                     "Content-Type": "application/json; charset=utf-8"},
            body=body,
            received_at=datetime.fromtimestamp(now, UTC),
        )  # fmt: skip

    def advance_time(self, seconds: float) -> None:
        self.control("/clock", {"advance_seconds": seconds})

    def run_payout(self) -> None:
        self.control("/payouts/run", {"outcome": "paid"})

    def ledger_moves(self, psp_reference: str) -> dict[str, int]:
        entries = self.control(f"/journal?payment_intent={psp_reference}", method="GET")["data"]
        counts = {"captures": 0, "refunds": 0, "voids": 0, "credits": 0}
        names = {"capture": "captures", "refund": "refunds", "void": "voids"}
        for entry in entries:
            if entry["op"] in names:
                counts[names[entry["op"]]] += 1
        return counts


@contextlib.contextmanager
def sandbox_environment(account_name: str, **sandbox_overrides: Any) -> Iterator[StripeSandboxEnvironment]:
    """Start a fresh sandbox on loopback and yield an environment with an account for it."""
    # The core's loopback runner (shipped for plugin authors in payweave.core.testing); the
    # conformance suite that calls this hook is part of the core, so it is installed.
    from payweave.core.testing.loopback import LoopbackServer

    api_key = f"sk_test_{uuid.uuid4().hex}"
    webhook_secret = f"whsec_{uuid.uuid4().hex}"
    options: dict[str, Any] = {
        "api_keys": (api_key,),
        "balance_available_after_seconds": 0,
        "webhook_delivery": "manual",
        **sandbox_overrides,
    }
    with LoopbackServer(create_app(SandboxSettings(**options))) as server:
        settings = StripeLikeSettings(
            api_key=SecretStr(api_key),
            base_url=server.url,
            webhook_secret=SecretStr(webhook_secret),
            save_cards_for_renewal=True,
            read_timeout_seconds=5.0,
            retry_base_delay_seconds=0.05,
            retry_max_delay_seconds=0.2,
        )
        env = StripeSandboxEnvironment(
            server.url, Account(plugin="psp_stripe_like", name=account_name, settings=settings), api_key, webhook_secret
        )
        try:
            yield env
        finally:
            env.close()

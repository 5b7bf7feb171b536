"""Settings of the Stripe-shaped sandbox (all optional; the defaults mirror Stripe test mode)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DAY = 86_400


@dataclass(frozen=True)
class WebhookEndpointConfig:
    """A webhook endpoint known from the start (``POST /v1/webhook_endpoints`` adds more)."""

    url: str
    secret: str
    enabled_events: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class SandboxSettings:
    #: Accepted secret keys. None accepts any key that starts with ``sk_test_``.
    api_keys: tuple[str, ...] | None = None
    #: Validity of an uncaptured card authorization (Stripe: 7 days for customer-initiated).
    authorization_validity_seconds: int = 7 * DAY
    #: Validity for merchant-initiated (off-session) Visa authorizations: 4 days 18 hours.
    mit_visa_authorization_validity_seconds: int = 4 * DAY + 18 * 3600
    #: Processing fee on a charge: ``round_half_up(amount * fee_percent_bps / 10000) + fee_fixed``
    #: in the charge currency's minor units (2.9 % + 30 by default). Refunds carry no fee.
    fee_percent_bps: int = 290
    fee_fixed: int = 30
    #: Funds of a charge become available for payout this long after the capture.
    balance_available_after_seconds: int = 2 * DAY
    #: Payouts arrive (``arrival_date``) this long after they are created.
    payout_arrival_seconds: int = 2 * DAY
    #: Checkout Sessions expire this long after creation unless ``expires_at`` is given.
    checkout_session_ttl_seconds: int = DAY
    #: Idempotency keys are pruned this long after first use.
    idempotency_key_ttl_seconds: int = DAY
    #: Sandbox clock start (unix seconds); None starts at the real time. The clock runs with
    #: real time either way and moves forward through ``POST /_sandbox/clock``.
    start_time: int | None = None
    #: Freeze the clock (it then moves only through ``POST /_sandbox/clock``).
    frozen_clock: bool = False
    webhook_endpoints: tuple[WebhookEndpointConfig, ...] = ()
    #: ``background``: a thread delivers events as they happen and retries failures;
    #: ``manual``: nothing is sent until ``POST /_sandbox/webhooks/flush``.
    webhook_delivery: Literal["background", "manual"] = "background"
    #: Attempts per event and endpoint (the first delivery included).
    webhook_max_attempts: int = 4
    #: Delay before retry n is ``webhook_backoff_seconds * 2 ** (n - 1)``, capped below.
    webhook_backoff_seconds: float = 0.05
    webhook_backoff_max_seconds: float = 2.0
    webhook_timeout_seconds: float = 5.0
    #: Public base URL used for hosted checkout pages; None uses the request's own base URL.
    public_url: str | None = None
    api_version: str = "2026-10-28.endive"
    #: Cap on how long a "drop" fault holds a response (the client normally disconnects first).
    max_fault_hold_seconds: float = 60.0
    #: Stable seed for generated ids (tests get reproducible ids); None is random.
    id_seed: int | None = None

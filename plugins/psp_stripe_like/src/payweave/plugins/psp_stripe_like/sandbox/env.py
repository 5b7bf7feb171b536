"""``payweave stripe-sandbox``: the sandbox app configured from the environment.

* ``PAYWEAVE_STRIPE_SANDBOX_API_KEYS``: accepted secret keys, comma separated (default: any ``sk_test_...``).
* ``PAYWEAVE_STRIPE_SANDBOX_WEBHOOK_URL`` and ``..._WEBHOOK_SECRET``: a webhook endpoint known at start.
* ``PAYWEAVE_STRIPE_SANDBOX_PUBLIC_URL``: base URL for hosted checkout pages.
* ``PAYWEAVE_STRIPE_SANDBOX_FEE_PERCENT_BPS`` / ``..._FEE_FIXED``: the fee rule (default 290 bps + 30).
"""
from __future__ import annotations

import os

from starlette.applications import Starlette

from .app import create_app
from .settings import SandboxSettings, WebhookEndpointConfig

PREFIX = "PAYWEAVE_STRIPE_SANDBOX_"


def settings_from_env(environ: dict[str, str] | None = None) -> SandboxSettings:
    env = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(PREFIX + name)
        return value.strip() if value and value.strip() else None

    keys = get("API_KEYS")
    url, secret = get("WEBHOOK_URL"), get("WEBHOOK_SECRET")
    if (url is None) != (secret is None):
        raise ValueError(f"set both {PREFIX}WEBHOOK_URL and {PREFIX}WEBHOOK_SECRET, or neither")
    defaults = SandboxSettings()
    return SandboxSettings(
        api_keys=tuple(k.strip() for k in keys.split(",") if k.strip()) if keys else None,
        webhook_endpoints=(WebhookEndpointConfig(url, secret),) if url and secret else (),
        public_url=get("PUBLIC_URL"),
        fee_percent_bps=int(get("FEE_PERCENT_BPS") or defaults.fee_percent_bps),
        fee_fixed=int(get("FEE_FIXED") or defaults.fee_fixed),
    )


def app_from_env() -> Starlette:
    return create_app(settings_from_env())

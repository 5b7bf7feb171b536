"""A Stripe-shaped PSP sandbox: a real in-memory ledger behind Stripe's v1 wire format.

    from payweave.plugins.psp_stripe_like.sandbox import SandboxSettings, create_app
    app = create_app(SandboxSettings(webhook_endpoints=(WebhookEndpointConfig(url, "whsec_..."),)))

See docs/psp-stripe-like.md for the endpoints, the test cards and the control surface.
"""
from .app import API_ROUTES, Sandbox, create_app
from .cards import TEST_CARDS
from .settings import SandboxSettings, WebhookEndpointConfig
from .webhooks import sign, signature_header

__all__ = [
    "API_ROUTES",
    "TEST_CARDS",
    "Sandbox",
    "SandboxSettings",
    "WebhookEndpointConfig",
    "create_app",
    "sign",
    "signature_header",
]

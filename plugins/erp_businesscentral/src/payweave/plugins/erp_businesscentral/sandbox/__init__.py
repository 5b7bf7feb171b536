"""A Business Central API v2.0 sandbox (plus the payweave companion API) as an ASGI app.

    from payweave.plugins.erp_businesscentral.sandbox import SandboxState, create_app, seed

    state = SandboxState(webhook_delivery="manual")
    seed(state, seed=7, customers=20, invoices_per_year=200, years=1)
    client_id, secret = state.register_app()
    app = create_app(state)        # serve with uvicorn, or LoopbackServer(app) in tests

See docs/bc-companion-api.md for the companion API and the admin endpoints in :mod:`.admin`.
"""
from .app import create_app
from .clock import SandboxClock
from .errors import BCApiError
from .seed import SeedResult, seed
from .state import Fault, LineSpec, SandboxState, ThrottleConfig

__all__ = [
    "BCApiError", "Fault", "LineSpec", "SandboxClock", "SandboxState", "SeedResult", "ThrottleConfig", "create_app",
    "seed",
]

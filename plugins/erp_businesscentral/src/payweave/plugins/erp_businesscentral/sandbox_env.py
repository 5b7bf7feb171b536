"""``payweave bc-sandbox``: the BC sandbox app configured from the environment.

The sandbox starts seeded (deterministic data) with one registered Entra application, so a
connection can be made at once::

    payweave bc-sandbox --port 8790 &
    export PAYWEAVE_BC_TENANT_ID=00000000-0000-4000-8000-00000000b0c0 \\
           PAYWEAVE_BC_CLIENT_ID=payweave-sandbox PAYWEAVE_BC_CLIENT_SECRET=payweave-sandbox-secret \\
           PAYWEAVE_BC_API_BASE_URL=http://127.0.0.1:8790 \\
           PAYWEAVE_BC_TOKEN_URL='http://127.0.0.1:8790/{tenant}/oauth2/v2.0/token'
    payweave connect

Variables (prefix ``PAYWEAVE_BC_SANDBOX_``): ``TENANT_ID``, ``CLIENT_ID``, ``CLIENT_SECRET``,
``SEED`` (7), ``CUSTOMERS`` (20), ``INVOICES_PER_YEAR`` (200), ``YEARS`` (2), ``ORDERS`` (5),
``WEBHOOK_DELAY_SECONDS`` (30, BC's batching window).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.applications import Starlette

from .sandbox import SandboxState, create_app, seed

PREFIX = "PAYWEAVE_BC_SANDBOX_"
DEFAULT_TENANT_ID = "00000000-0000-4000-8000-00000000b0c0"
DEFAULT_CLIENT_ID = "payweave-sandbox"
DEFAULT_CLIENT_SECRET = "payweave-sandbox-secret"


def state_from_env(environ: Mapping[str, str] | None = None) -> SandboxState:
    env = dict(os.environ if environ is None else environ)

    def get(name: str, default: str) -> str:
        value = env.get(PREFIX + name, "").strip()
        return value or default

    state = SandboxState(tenant_id=get("TENANT_ID", DEFAULT_TENANT_ID),
                         webhook_delay_seconds=float(get("WEBHOOK_DELAY_SECONDS", "30")))
    seed(state, seed=int(get("SEED", "7")), customers=int(get("CUSTOMERS", "20")),
         invoices_per_year=int(get("INVOICES_PER_YEAR", "200")), years=int(get("YEARS", "2")),
         orders=int(get("ORDERS", "5")))
    state.register_app(get("CLIENT_ID", DEFAULT_CLIENT_ID), get("CLIENT_SECRET", DEFAULT_CLIENT_SECRET))
    return state


def app_from_env() -> Starlette:
    return create_app(state_from_env())

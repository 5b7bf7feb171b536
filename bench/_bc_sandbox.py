"""Child process of bench_sync: a seeded BC sandbox under uvicorn on 127.0.0.1.

    python _bc_sandbox.py '{"invoices": 100000, "customers": 10000, "lines": 5}'

Seeds the sandbox (deterministic), registers one Entra app, starts serving, then prints one JSON
line (url, credentials, company, counts, seed seconds) and serves until its stdin closes. It runs
in its own process so the sandbox's CPU work does not share a GIL with the process measured.
"""
from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])
    from payweave.core.testing.loopback import LoopbackServer
    from payweave.plugins.erp_businesscentral.sandbox import SandboxState, create_app, seed

    years = int(spec.get("years", 2))
    invoices = int(spec["invoices"])
    state = SandboxState(webhook_delivery="manual")
    start = time.perf_counter()
    result = seed(state, seed=int(spec.get("seed", 10)), customers=int(spec["customers"]), items=200,
                  invoices_per_year=-(-invoices // years), years=years, lines_per_invoice=int(spec.get("lines", 5)),
                  orders=5, credit_memos=int(spec.get("credit_memos", 20)), return_orders=1, draft_invoices=5)
    seed_seconds = time.perf_counter() - start
    client_id, secret = state.register_app()
    company = next(iter(state.companies.values()))
    server = LoopbackServer(create_app(state)).start()
    print(json.dumps({
        "url": server.url, "tenant_id": state.tenant_id, "environment": state.environment,
        "client_id": client_id, "client_secret": secret, "company_id": company.id,
        "seed": result.as_json(), "seed_seconds": round(seed_seconds, 2),
    }), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


if __name__ == "__main__":
    main()

"""Child process of bench_sync: one measured run, one JSON line on stdout.

    python _sync_child.py sync  '{"sandbox": {...}, "database_url": "sqlite:///...", "page_size": 20000}'
    python _sync_child.py delta '{... "entities": ["invoices"] or null}'
    python _sync_child.py floor '{"sandbox": {...}, "page_size": 20000}'

``sync`` connects the company (Pending -> initial sync -> Connected) with ErpSyncService;
``delta`` runs one delta sync on the same store; ``floor`` downloads the same records with a bare
httpx loop (token, then every entity set the sync reads, at the same page size, following
``@odata.nextLink``, parsing each page as JSON and nothing else). Each run reports its own peak
RSS (VmHWM, read just before it exits); the seconds reported exclude interpreter start-up and
imports (identical on both sides), and include everything from the first request to the last.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any


def _account(sb: dict[str, Any], page_size: int) -> dict[str, Any]:
    # the company is configured (``company_id``, as ``payweave connect --company`` or
    # PAYWEAVE_BC_COMPANY_ID give it), as the floor knows it: connect lists no companies
    return {
        "tenant_id": sb["tenant_id"], "environment": sb["environment"], "client_id": sb["client_id"],
        "client_secret": sb["client_secret"], "token_url": f"{sb['url']}/{{tenant}}/oauth2/v2.0/token",
        "api_base_url": sb["url"], "page_size": page_size, "company_id": sb["company_id"],
    }


def _service(spec: dict[str, Any]):
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings
    from payweave.core.store import Store
    from payweave.core.sync import ErpSyncService, SyncSettings

    settings = PayweaveSettings(database_url=spec["database_url"], plugins="erp_businesscentral",
                                accounts={"erp_businesscentral": {"default": _account(spec["sandbox"], spec["page_size"])}})
    manager = PluginManager(settings)
    manager.load_entrypoints()
    store = Store(spec["database_url"])  # migrations run here, before the clock starts
    sync = SyncSettings(page_size=spec["page_size"], pdfs="none")
    return ErpSyncService(store, manager, settings=sync), store


def sync(spec: dict[str, Any]) -> dict[str, Any]:
    service, store = _service(spec)
    start = time.perf_counter()
    view = service.connect()
    seconds = time.perf_counter() - start
    status = service.status(view.company_id)
    store.dispose()
    return {"seconds": seconds, "status": view.status, "company_id": view.company_id, "counts": status.counts}


def delta(spec: dict[str, Any]) -> dict[str, Any]:
    from payweave.hooks.models import SyncEntity

    service, store = _service(spec)
    company = spec["company_id"]
    entities = [SyncEntity(e) for e in spec["entities"]] if spec.get("entities") else None
    start = time.perf_counter()
    report = service.run_sync(company, entities=entities)
    seconds = time.perf_counter() - start
    store.dispose()
    changed = {f"{c.phase}:{c.entity}": c.records for c in report.streams if c.records}
    return {"seconds": seconds, "records": changed,
            "updated": sum(c.updated for c in report.streams), "inserted": sum(c.inserted for c in report.streams)}


def floor(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx
    from payweave.plugins.erp_businesscentral.connector import STREAMS
    from payweave.plugins.erp_businesscentral.settings import DEFAULT_SCOPE

    sb = spec["sandbox"]
    base = f"{sb['url']}/v2.0/{sb['tenant_id']}/{sb['environment']}/api/v2.0/companies({sb['company_id']})"
    counts: dict[str, int] = {}
    requests = 0
    with httpx.Client(timeout=120) as http:
        start = time.perf_counter()
        token = http.post(f"{sb['url']}/{sb['tenant_id']}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": sb["client_id"], "client_secret": sb["client_secret"],
            "scope": DEFAULT_SCOPE}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                   "Prefer": f"odata.maxpagesize={spec['page_size']}"}
        for entity_set, expand, _mapper in STREAMS.values():
            url: str | None = f"{base}/{entity_set}" + (f"?$expand={expand}" if expand else "")
            n = 0
            while url:
                response = http.get(url, headers=headers)
                response.raise_for_status()
                requests += 1
                body = response.json()
                n += len(body["value"])
                url = body.get("@odata.nextLink")
            counts[entity_set] = n
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "records": counts, "requests": requests}


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), read last thing before exiting.

    Not ``ru_maxrss`` from the parent's ``wait4``: Linux carries the forking parent's RSS high-water
    mark over into the child's ``ru_maxrss`` at exec, so a small child would report the (large)
    benchmark runner's RSS. VmHWM belongs to this process's own address space."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


if __name__ == "__main__":
    mode, raw = sys.argv[1], sys.argv[2]
    from common import quiet_logging

    quiet_logging()
    out = {"sync": sync, "delta": delta, "floor": floor}[mode](json.loads(raw))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, default=str), flush=True)

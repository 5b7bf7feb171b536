"""ERP sync: the initial sync of a seeded BC sandbox, against the same download by a bare httpx
loop (the floor), then a delta after 10 invoices changed; and how the initial sync's time grows
with the history size (plot: bench/results/sync_scaling.png).

Processes: the BC sandbox (seeded, under uvicorn on 127.0.0.1) runs in one child process; each
measured run (``payweave`` initial sync, delta, floor) runs in another (``_sync_child.py``), so
the process measured shares its GIL with nothing else, and its peak RSS (its own VmHWM) is
that of the syncing process alone. Requests are counted by the sandbox.

* requests: every API request the sync made (the OAuth token requests are reported apart) vs
  the minimum ``sum over entity sets of ceil(records / page size)`` (the page size is BC's
  maximum, 20,000, in the full size). Target <= 1.05 x minimum. The connection names its
  company (``company_id`` in the account, as the floor knows it), so ``connect`` lists no
  companies; without it the list costs one more request.
* time: initial sync vs the floor (token + every entity set the sync reads, same ``$expand``, same
  page size, each page parsed as JSON and dropped). The faster of two floor runs (one before,
  one after the sync) is the floor. Target ratio <= 1.5.
* peak RSS of the syncing process: target <= 300 MB.
* the main size also runs the initial sync once more at the sync's default page size
  (``SyncSettings.page_size``):
  peak RSS and requests there, since at BC's maximum page size a single page of invoices with
  their lines is itself hundreds of MB (the bare loop's own peak RSS shows it).
* delta: 10 invoices get a payment in BC, then one ``run_sync`` (what polling runs): requests
  and time. Target <= 2 requests. The same after a BC notification naming only invoices
  (``entities=[invoices]``) is reported in the context.

The sync runs with PDFs off (``pdfs="none"``): PDFs cost requests per invoice and are not part of
the record minimum. Store: SQLite (the embedded default).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from common import Result, output_dir

from payweave.core.sync.settings import MAX_PAGE_SIZE, SyncSettings
from payweave.plugins.erp_businesscentral.settings import DEFAULT_SCOPE as BC_SCOPE

HERE = Path(__file__).parent
SIZES: dict[str, dict[str, Any]] = {
    # history sizes for the scaling plot; the last one is the main measurement
    # floor_runs: bare-loop runs at the main size (the faster is the floor); smaller sizes get one
    # in the full size and none in the smoke size (to keep it short)
    "smoke": {"invoices": [300, 800], "customers_per_invoice": 0.1, "page_size": 150, "floor_runs": 1},
    "full": {"invoices": [10_000, 30_000, 100_000], "customers_per_invoice": 0.1, "page_size": MAX_PAGE_SIZE,
             "floor_runs": 2},
}
#: the sync's own default page size (what a connection uses unless configured)
DEFAULT_PAGE_SIZE: int = SyncSettings.model_fields["page_size"].default
TARGETS = {"requests_ratio": 1.05, "time_ratio": 1.5, "rss_mb": 300, "delta_requests": 2}
CHANGED = 10


# ------------------------------------------------------------------------------------------ processes
class Sandbox:
    def __init__(self, invoices: int, customers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_bc_sandbox.py"), json.dumps({"invoices": invoices, "customers": customers})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the BC sandbox did not start (exit {self.proc.returncode})")
        self.info: dict[str, Any] = json.loads(line)
        self.http = httpx.Client(base_url=self.info["url"], timeout=60)

    def reset_stats(self) -> None:
        self.http.delete("/_sandbox/stats").raise_for_status()

    def stats(self) -> dict[str, Any]:
        snap = self.http.get("/_sandbox/stats").raise_for_status().json()
        by_set: dict[str, int] = {}
        for row in snap["requests"]:
            by_set[row["entitySet"]] = by_set.get(row["entitySet"], 0) + row["count"]
        return {"api_requests": sum(by_set.values()), "by_entity_set": by_set,
                "token_requests": sum(snap["tokenRequests"].values())}

    def change_invoices(self, n: int, skip: set[str]) -> list[str]:
        """Post a small payment on ``n`` open posted invoices (a BC user's change)."""
        token = self.http.post(f"/{self.info['tenant_id']}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": self.info["client_id"],
            "client_secret": self.info["client_secret"], "scope": BC_SCOPE}).raise_for_status().json()["access_token"]
        url = (f"/v2.0/{self.info['tenant_id']}/{self.info['environment']}/api/v2.0/companies({self.info['company_id']})"
               f"/salesInvoices")
        rows = self.http.get(url, params={"$filter": "status eq 'Open'", "$top": str(n + len(skip))},
                             headers={"Authorization": f"Bearer {token}"}).raise_for_status().json()["value"]
        chosen = [r["id"] for r in rows if r["id"] not in skip][:n]
        for invoice_id in chosen:
            self.http.post(f"/_sandbox/companies/{self.info['company_id']}/invoices/{invoice_id}/payments",
                           json={"amount": "1.00"}).raise_for_status()
        if len(chosen) < n:
            raise RuntimeError(f"only {len(chosen)} open invoices to change")
        return chosen

    def close(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured child; returns its JSON line (with its own peak RSS in MB)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.run([sys.executable, str(HERE / "_sync_child.py"), mode, json.dumps(spec)],
                              stdout=subprocess.PIPE, stderr=err, text=True, cwd=HERE)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{mode} child failed ({proc.returncode}):\n{err.read()[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def minimum_requests(records: dict[str, int], page_size: int) -> int:
    return sum(max(1, math.ceil(n / page_size)) for n in records.values())


# ------------------------------------------------------------------------------------------ one size
def measure(invoices: int, customers: int, page_size: int, tmp: Path, *, main: bool, floor_runs: int,
            default_page: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"invoices": invoices, "customers": customers}
    with Sandbox(invoices, customers) as sb:
        out["seed"] = sb.info["seed"]
        spec = {"sandbox": sb.info, "page_size": page_size,
                "database_url": f"sqlite:///{tmp / f'sync-{invoices}.db'}", "company_id": sb.info["company_id"]}
        floors = []
        if floor_runs:
            sb.reset_stats()
            floors.append(child("floor", spec))
            out["floor_server_stats"] = sb.stats()
        sb.reset_stats()
        synced = child("sync", spec)
        out["sync_server_stats"] = sb.stats()
        out["sync"] = synced
        for _ in range(floor_runs - 1):
            sb.reset_stats()
            floors.append(child("floor", spec))
        out["floors"] = floors
        if floors:
            out["floor"] = min(floors, key=lambda f: f["seconds"])
        if not main:
            return out
        # delta after 10 changed invoices: polling (every stream), then a notification (invoices)
        spec["company_id"] = synced["company_id"]
        first = sb.change_invoices(CHANGED, set())
        sb.reset_stats()
        out["delta"] = child("delta", {**spec, "entities": None})
        out["delta_server_stats"] = sb.stats()
        sb.change_invoices(CHANGED, set(first))
        sb.reset_stats()
        out["delta_notified"] = child("delta", {**spec, "entities": ["invoices"]})
        out["delta_notified_server_stats"] = sb.stats()
        if default_page:
            # the same initial sync at the sync's default page size, into a fresh store, and its
            # floor: the bare loop at that page size
            dp_spec = {**spec, "page_size": DEFAULT_PAGE_SIZE,
                       "database_url": f"sqlite:///{tmp / f'sync-{invoices}-default-page.db'}"}
            sb.reset_stats()
            out["default_page"] = child("sync", dp_spec)
            out["default_page_server_stats"] = sb.stats()
            out["default_page_floor"] = child("floor", dp_spec)
    return out


# ------------------------------------------------------------------------------------------ plot
def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, r squared)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def plot(points: list[dict[str, Any]], path: Path, size: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key, label, style in (("sync", "payweave initial sync", "o-"), ("floor", "floor (bare httpx loop)", "s--")):
        pts = [(p["invoices"], p[key]["seconds"]) for p in points if key in p]
        if len(pts) < 2:
            continue
        a, b, r2 = linear_fit([x for x, _ in pts], [y for _, y in pts])
        ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=f"{label}: {b * 1000:.3f} s per 1k invoices, R²={r2:.3f}")
    ax.set_xlabel("posted invoices in BC (customers = 10 % of invoices)")
    ax.set_ylabel("seconds")
    ax.set_title(f"Initial sync time vs history size ({size})")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ run
def run(size: str) -> list[Result]:
    cfg = SIZES[size]
    page_size = cfg["page_size"]
    points = []
    with tempfile.TemporaryDirectory(prefix="payweave-bench-sync-") as tmp:
        sizes = cfg["invoices"]
        for n in sizes:
            customers = max(1, int(n * cfg["customers_per_invoice"]))
            main = n == sizes[-1]
            floor_runs = cfg["floor_runs"] if main else (1 if size == "full" else 0)
            points.append(measure(n, customers, page_size, Path(tmp), main=main, floor_runs=floor_runs,
                                  default_page=main and page_size != DEFAULT_PAGE_SIZE))
    main = points[-1]
    sync, floor = main["sync"], main["floor"]
    records = floor["records"]
    minimum = minimum_requests(records, page_size)
    made = main["sync_server_stats"]["api_requests"]
    req_ratio = made / minimum
    time_ratio = sync["seconds"] / floor["seconds"]
    common_ctx = {"invoices": main["seed"]["invoices"], "invoice_lines": main["seed"]["invoiceLines"],
                  "customers": main["seed"]["customers"], "page_size": page_size, "store": "sqlite", "pdfs": "none"}
    results = [
        Result(
            name="sync_requests", metric="initial sync: API requests made / minimum", value=made, unit="requests",
            floor=minimum, target=f"ratio <= {TARGETS['requests_ratio']}",
            context={**common_ctx, "records_by_entity_set": records,
                     "by_entity_set": main["sync_server_stats"]["by_entity_set"],
                     "token_requests": main["sync_server_stats"]["token_requests"],
                     "floor_requests": main["floor_server_stats"]["api_requests"],
                     "minimum": "sum over entity sets of ceil(records / page size)"},
        ).judge(round(req_ratio, 3), req_ratio <= TARGETS["requests_ratio"]),
        Result(
            name="sync_time", metric="initial sync / bare httpx download of the same records", value=round(sync["seconds"], 2),
            unit="s", floor=round(floor["seconds"], 2), target=f"ratio <= {TARGETS['time_ratio']}",
            context={**common_ctx, "floor_runs_s": [round(f["seconds"], 2) for f in main["floors"]],
                     "records_per_s": round((records.get("salesInvoices", 0) + records.get("customers", 0)) / sync["seconds"]),
                     "status_after": sync["status"], "stored": sync["counts"]},
        ).judge(round(time_ratio, 2), time_ratio <= TARGETS["time_ratio"]),
        Result(
            name="sync_peak_rss", metric="peak RSS of the syncing process", value=round(sync["peak_rss_mb"], 1), unit="MB",
            floor=round(floor["peak_rss_mb"], 1), target=f"<= {TARGETS['rss_mb']} MB",
            context={**common_ctx, "floor": "peak RSS of the bare httpx loop process"},
        ).judge(round(sync["peak_rss_mb"] / floor["peak_rss_mb"], 2), sync["peak_rss_mb"] <= TARGETS["rss_mb"]),
    ]
    if "delta" in main:
        delta, notified = main["delta"], main["delta_notified"]
        d_made = main["delta_server_stats"]["api_requests"]
        results.append(Result(
            name="sync_delta", metric=f"delta after {CHANGED} changed invoices: API requests", value=d_made,
            unit="requests", floor=None, target=f"<= {TARGETS['delta_requests']} requests",
            context={"seconds": round(delta["seconds"], 3), "by_entity_set": main["delta_server_stats"]["by_entity_set"],
                     "records_read": delta["records"], "updated": delta["updated"],
                     "notified_invoices_only": {
                         "requests": main["delta_notified_server_stats"]["api_requests"],
                         "by_entity_set": main["delta_notified_server_stats"]["by_entity_set"],
                         "seconds": round(notified["seconds"], 3), "records_read": notified["records"],
                         "updated": notified["updated"]}},
        ).judge(None, d_made <= TARGETS["delta_requests"]))
    if "default_page" in main:
        dp, stats, dp_floor = main["default_page"], main["default_page_server_stats"], main["default_page_floor"]
        dp_min = minimum_requests(records, DEFAULT_PAGE_SIZE)
        results.append(Result(
            name="sync_default_page", metric=f"initial sync at the default page size ({DEFAULT_PAGE_SIZE}): peak RSS",
            value=round(dp["peak_rss_mb"], 1), unit="MB", floor=round(dp_floor["peak_rss_mb"], 1),
            target=f"<= {TARGETS['rss_mb']} MB",
            context={**common_ctx, "page_size": DEFAULT_PAGE_SIZE, "seconds": round(dp["seconds"], 2),
                     "floor_seconds": round(dp_floor["seconds"], 2),
                     "seconds_vs_floor": round(dp["seconds"] / dp_floor["seconds"], 2),
                     "requests": stats["api_requests"], "minimum_at_this_page_size": dp_min,
                     "requests_vs_minimum_at_this_page_size": round(stats["api_requests"] / dp_min, 3),
                     "requests_vs_minimum_at_max_page_size": round(stats["api_requests"] / minimum, 3),
                     "floor": f"peak RSS of the bare loop at page size {DEFAULT_PAGE_SIZE}"},
        ).judge(round(dp["peak_rss_mb"] / dp_floor["peak_rss_mb"], 2), dp["peak_rss_mb"] <= TARGETS["rss_mb"]))
    png = plot(points, output_dir() / "sync_scaling.png", size)
    xs = [p["invoices"] for p in points]
    ys = [p["sync"]["seconds"] for p in points]
    a, b, r2 = linear_fit(xs, ys)
    per_k = [round(p["sync"]["seconds"] / p["invoices"] * 1000, 3) for p in points]
    results.append(Result(
        name="sync_scaling", metric="initial sync seconds per 1k invoices at the largest / smallest size",
        value=per_k[-1], unit="s per 1k invoices", floor=per_k[0], target="(reported: ~1 means linear)",
        context={"sizes": xs, "sync_s": [round(y, 2) for y in ys], "floor_s": [round(p["floor"]["seconds"], 2) if "floor" in p else None for p in points],
                 "peak_rss_mb": [round(p["sync"]["peak_rss_mb"], 1) for p in points],
                 "linear_fit": {"intercept_s": round(a, 2), "s_per_1k": round(b * 1000, 3), "r2": round(r2, 4)},
                 "plot": str(png)},
    ).judge(round(per_k[-1] / per_k[0], 2), None))
    return results

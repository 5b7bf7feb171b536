#!/usr/bin/env python3
"""Run the payweave benchmarks and print each result as a ratio against its floor.

    python3 dev.py bench                 # full size (see each bench_*.py for what that means)
    python3 dev.py bench --size smoke    # tiny sizes: checks the benchmarks still work (CI runs this)
    python3 dev.py bench --only hooks    # one benchmark

Results are also written to bench/results/latest.json (and a time-stamped copy beside it, so runs
can be compared: --compare bench/results/run-....json). Benchmarks report; they never fail.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import OUTPUT, Result, cpus, quiet_logging, write_json  # noqa: E402

BENCHMARKS = ["hooks", "engine", "sync", "webhooks"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["smoke", "full"], default="full")
    parser.add_argument("--only", action="append", choices=BENCHMARKS)
    parser.add_argument("--json", type=Path, help="where to write results (default bench/results/latest.json)")
    parser.add_argument("--compare", type=Path, metavar="JSON",
                        help="an earlier results file (e.g. bench/results/run-*.json): print each figure beside it")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    quiet_logging()  # payweave's logs (JSON, INFO) go to /dev/null: their cost is measured, not printed
    if args.json is not None:
        OUTPUT["dir"] = args.json.parent
    results: list[Result] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench_{name}":
                console.print(f"[yellow]skip[/] {name}: not written yet")
                continue
            raise
        console.print(f"[bold]running[/] {name} ({args.size})")
        t0 = time.perf_counter()
        try:
            results.extend(module.run(args.size))
            console.print(f"[dim]{name}: {time.perf_counter() - t0:.1f} s[/]")
        except Exception:
            console.print(f"[red]{name} failed[/]\n{traceback.format_exc()}")
            results.append(Result(name=name, metric="benchmark crashed", value=float("nan"), unit="", ok=False))

    table = Table(title=f"payweave benchmarks ({args.size})")
    for col in ("benchmark", "metric", "value", "floor", "ratio", "target", "met"):
        table.add_column(col)
    for r in results:
        met = "[green]yes[/]" if r.ok else ("[red]no[/]" if r.ok is False else "-")
        if r.skipped:
            met = "[yellow]skipped[/]"
        table.add_row(
            r.name, r.metric, "-" if r.skipped else f"{r.value} {r.unit}", "" if r.floor is None else f"{r.floor} {r.unit}",
            "" if r.ratio is None else f"{r.ratio}", r.target, met,
        )
    console.print(table)
    for r in results:
        if r.skipped:
            console.print(f"[yellow]{r.name} skipped:[/] {r.skipped}")
        if r.context:
            console.print(f"[dim]{r.name}: {r.context}[/]")
    extra = {"seconds": round(time.perf_counter() - started, 1),
             "loadavg_before": [round(x, 2) for x in load_before],
             "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    console.print(f"total {extra['seconds']} s; load average before {extra['loadavg_before']}, after {extra['loadavg_after']}"
                  f" ({cpus()} CPUs): other work on the machine makes every figure noisier")
    path = write_json(results, args.size, args.json, extra=extra)
    stamped = write_json(results, args.size, path.parent / f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{args.size}.json",
                         extra=extra) if args.json is None else None
    console.print(f"results written to {path}" + (f" and {stamped.name}" if stamped else ""))
    if args.compare:
        compare(console, results, args.compare)
    return 0


def compare(console, results: list[Result], earlier: Path) -> None:
    """Each figure of this run beside the same figure in an earlier results file."""
    import json

    from rich.table import Table

    before = {r["name"]: r for r in json.loads(earlier.read_text())["results"]}
    table = Table(title=f"compared with {earlier.name}")
    for col in ("benchmark", "value then", "value now", "ratio then", "ratio now"):
        table.add_column(col)
    for r in results:
        old = before.get(r.name)
        if old is None:
            continue
        table.add_row(r.name, f"{old['value']} {old['unit']}", f"{r.value} {r.unit}",
                      str(old.get("ratio", "")), "" if r.ratio is None else str(r.ratio))
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())

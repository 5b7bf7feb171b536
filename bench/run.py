#!/usr/bin/env python3
"""Run the payweave benchmarks and print each result as a ratio against its floor.

    python3 dev.py bench                 # full size (see each bench_*.py for what that means)
    python3 dev.py bench --size smoke    # tiny sizes: checks the benchmarks still work (CI runs this)
    python3 dev.py bench --only hooks    # one benchmark

Results are also written to bench/results/latest.json. Benchmarks report; they never fail.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import Result, write_json  # noqa: E402

BENCHMARKS = ["hooks", "engine", "sync", "webhooks"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["smoke", "full"], default="full")
    parser.add_argument("--only", action="append", choices=BENCHMARKS)
    parser.add_argument("--json", type=Path, help="where to write results (default bench/results/latest.json)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    results: list[Result] = []
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench_{name}":
                console.print(f"[yellow]skip[/] {name}: not written yet")
                continue
            raise
        console.print(f"[bold]running[/] {name} ({args.size})")
        try:
            results.extend(module.run(args.size))
        except Exception:
            console.print(f"[red]{name} failed[/]\n{traceback.format_exc()}")
            results.append(Result(name=name, metric="benchmark crashed", value=float("nan"), unit="", ok=False))

    table = Table(title=f"payweave benchmarks ({args.size})")
    for col in ("benchmark", "metric", "value", "floor", "ratio", "target", "met"):
        table.add_column(col)
    for r in results:
        met = "[green]yes[/]" if r.ok else ("[red]no[/]" if r.ok is False else "-")
        table.add_row(
            r.name, r.metric, f"{r.value} {r.unit}", "" if r.floor is None else f"{r.floor} {r.unit}",
            "" if r.ratio is None else f"{r.ratio}", r.target, met,
        )
    console.print(table)
    for r in results:
        if r.context:
            console.print(f"[dim]{r.name}: {r.context}[/]")
    path = write_json(results, args.size, args.json)
    console.print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

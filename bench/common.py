"""Shared benchmark plumbing: results with their floors, ratios, targets, JSON output.

A benchmark reports; it never fails CI. Each :class:`Result` carries the measured figure, the
floor measured in the same run (what the same work costs without payweave), their ratio and
the target the ratio should meet.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
#: where this run writes its files (results JSON, plots); run.py points it next to --json
OUTPUT: dict[str, Path] = {"dir": RESULTS}


def output_dir() -> Path:
    return OUTPUT["dir"]


@dataclass
class Result:
    name: str
    metric: str
    value: float
    unit: str
    floor: float | None = None
    target: str = ""
    ratio: float | None = None
    ok: bool | None = None
    context: dict[str, Any] = field(default_factory=dict)
    #: why this figure could not be measured in this run (then ``value`` is NaN)
    skipped: str | None = None

    def judge(self, ratio: float | None, ok: bool | None) -> Result:
        self.ratio = ratio
        self.ok = ok
        return self


def skipped(name: str, metric: str, unit: str, target: str, reason: str) -> Result:
    return Result(name=name, metric=metric, value=float("nan"), unit=unit, target=target, skipped=reason)


def quiet_logging() -> None:
    """Keep payweave's structured logging on (JSON at INFO, as in production: its cost is part
    of what is measured) but send it to /dev/null instead of the benchmark's output."""
    import os

    from payweave.core.logging import configure

    configure("json", "INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def write_json(results: list[Result], size: str, path: Path | None = None, extra: dict[str, Any] | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": datetime.now(UTC).isoformat(),
        "size": size,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": cpus()},
        "results": [_finite(asdict(r)) for r in results],
        **(extra or {}),
    }
    path.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False))
    return path


def _finite(value: Any) -> Any:
    """NaN/inf become null, so the file is strict JSON."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

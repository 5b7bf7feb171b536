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

    def judge(self, ratio: float | None, ok: bool | None) -> Result:
        self.ratio = ratio
        self.ok = ok
        return self


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


def write_json(results: list[Result], size: str, path: Path | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": datetime.now(UTC).isoformat(),
        "size": size,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

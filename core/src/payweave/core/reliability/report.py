"""The report of a reliability run: what was tried (schedules, faults, inputs) and what held."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .checker import INVARIANTS
from .faults import FaultKind
from .schedule import ScheduleOutcome


@dataclass
class Violation:
    seed: int
    mode: str
    flow: str
    backend: str
    invariant: str
    message: str
    faults: list[str]

    @property
    def replay(self) -> str:
        if self.mode == "sigkill":
            return f"payweave reliability --sigkill-schedule {self.seed}"
        return f"payweave reliability --schedule {self.seed}"


@dataclass
class OtherCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class RunReport:
    size: str
    seed: int
    seconds: float = 0.0
    schedules: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(mode, flow) -> schedules run."""
    backends: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    coverage: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(flow, point class, fault kind) -> fired."""
    invariants: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    killed_at: Counter[str] = field(default_factory=Counter)
    kill_not_reached: int = 0
    processes_started: int = 0
    restarts: int = 0
    db_drops: int = 0
    bc_retry_after: list[float] = field(default_factory=list)
    log_lines: int = 0
    log_bytes: int = 0
    secrets_checked: int = 0
    leaks: list[str] = field(default_factory=list)
    other: list[OtherCheck] = field(default_factory=list)
    slowest: list[tuple[float, int, str]] = field(default_factory=list)
    matrix_run: Counter[str] = field(default_factory=Counter)
    """flow/point class/fault kind -> matrix schedules whose fault fired."""
    matrix_missed: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ building
    def add(self, outcome: ScheduleOutcome) -> None:
        self.schedules[(outcome.mode, outcome.flow)] += 1
        self.backends[outcome.backend] += 1
        self.invariants.update(outcome.checked)
        for invariant, message in outcome.violations:
            self.violations.append(Violation(outcome.seed, outcome.mode, outcome.flow, outcome.backend, invariant, message,
                                             list(outcome.faults)))
        if outcome.matrix is not None:
            if outcome.faults:
                self.matrix_run[outcome.matrix] += 1
            else:
                self.matrix_missed.append(outcome.matrix)
        self.slowest.append((outcome.seconds, outcome.seed, outcome.flow))
        self.slowest = sorted(self.slowest, reverse=True)[:5]

    @property
    def total_schedules(self) -> int:
        return sum(self.schedules.values())

    def count(self, mode: str) -> int:
        return sum(n for (m, _), n in self.schedules.items() if m == mode)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.leaks and all(c.ok for c in self.other)

    # ------------------------------------------------------------------ output
    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "schedules": {"total": self.total_schedules, "in_process": self.count("in-process"),
                          "sigkill": self.count("sigkill"),
                          "by_flow": {f"{m}/{f}": n for (m, f), n in sorted(self.schedules.items())},
                          "by_backend": dict(self.backends)},
            "faults": dict(sorted(self.faults.items())),
            "coverage": [{"flow": f, "point": p, "fault": k, "fired": n} for (f, p, k), n in sorted(self.coverage.items())],
            "invariants": {name: self.invariants.get(name, 0) for name in INVARIANTS},
            "fault_matrix": {"entries_fired": len(self.matrix_run), "not_reached": self.matrix_missed},
            "violations": [{**v.__dict__, "replay": v.replay} for v in self.violations],
            "sigkill": {"killed_at": dict(self.killed_at), "not_reached": self.kill_not_reached,
                        "processes_started": self.processes_started},
            "restarts": self.restarts,
            "db_drops": self.db_drops,
            "bc_retry_after": {"waits": len(self.bc_retry_after), "seconds": round(sum(self.bc_retry_after), 1)},
            "logs": {"lines": self.log_lines, "bytes": self.log_bytes, "secrets_checked": self.secrets_checked,
                     "leaks": self.leaks},
            "other_checks": [c.__dict__ for c in self.other],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")

    def render(self, console: Console) -> None:
        verdict = "[green]all invariants held[/green]" if self.ok else "[red]VIOLATIONS[/red]"
        console.print(f"[bold]payweave reliability[/bold] size={self.size} seed={self.seed}: {self.total_schedules} "
                      f"schedules in {self.seconds:.0f} s: {verdict}")

        t = Table(title="Schedules run per operation kind")
        t.add_column("operation")
        t.add_column("in-process (crash = abandoned process)", justify="right")
        t.add_column("real SIGKILL", justify="right")
        flows = sorted({f for _, f in self.schedules})
        for flow in flows:
            t.add_row(flow, str(self.schedules.get(("in-process", flow), 0)), str(self.schedules.get(("sigkill", flow), 0)))
        t.add_row("[bold]total[/bold]", str(self.count("in-process")), str(self.count("sigkill")))
        console.print(t)
        if self.backends:
            console.print("store backends: " + ", ".join(f"{b} {n}" for b, n in sorted(self.backends.items())))

        t = Table(title="Faults injected per kind")
        t.add_column("fault")
        t.add_column("fired", justify="right")
        for kind in FaultKind:
            n = self.faults.get(kind.value, 0)
            if kind is FaultKind.SIGKILL:
                n = sum(self.killed_at.values())
            t.add_row(kind.value, str(n))
        console.print(t)
        console.print(f"process restarts after a crash: {self.restarts}; database connections dropped: {self.db_drops}; "
                      f"BC Retry-After waits honoured: {len(self.bc_retry_after)} ({sum(self.bc_retry_after):.0f} s on the "
                      f"clock); victim processes started: {self.processes_started}, SIGKILLed: {sum(self.killed_at.values())}"
                      + (f", kill point not reached: {self.kill_not_reached}" if self.kill_not_reached else ""))

        if self.matrix_run or self.matrix_missed:
            console.print(f"fault matrix (every fault kind at every kind of point of every operation): "
                          f"{len(self.matrix_run)} entries fired"
                          + (f", not reached: {', '.join(self.matrix_missed[:5])}" if self.matrix_missed else ""))
        points = sorted({(f, p) for f, p, _ in self.coverage})
        if points:
            t = Table(title="Fault points covered (flow x point between steps)")
            t.add_column("operation")
            t.add_column("points with faults fired")
            by_flow: dict[str, list[str]] = {}
            for flow, point in points:
                n = sum(v for (f, p, _), v in self.coverage.items() if f == flow and p == point)
                by_flow.setdefault(flow, []).append(f"{point} ({n})")
            for flow, items in sorted(by_flow.items()):
                t.add_row(flow, ", ".join(items))
            console.print(t)

        t = Table(title="Invariants checked")
        t.add_column("invariant")
        t.add_column("checks", justify="right")
        t.add_column("violations", justify="right")
        broken = Counter(v.invariant for v in self.violations)
        for name in INVARIANTS:
            t.add_row(name, str(self.invariants.get(name, 0)), str(broken.get(name, 0)))
        console.print(t)

        t = Table(title="Other checks")
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail")
        leak = f"{self.secrets_checked} secrets looked for in {self.log_lines} log lines ({self.log_bytes} bytes)"
        t.add_row("secrets never in logs", "[green]held[/green]" if not self.leaks else "[red]LEAK[/red]",
                  leak if not self.leaks else "; ".join(self.leaks[:3]))
        for check in self.other:
            t.add_row(check.name, "[green]held[/green]" if check.ok else "[red]FAILED[/red]", check.detail)
        console.print(t)

        if self.violations:
            t = Table(title="Violations (replay one with the command shown)")
            t.add_column("seed")
            t.add_column("operation")
            t.add_column("invariant")
            t.add_column("faults")
            t.add_column("what")
            for v in self.violations[:30]:
                t.add_row(str(v.seed), f"{v.mode}/{v.flow}", v.invariant, ", ".join(v.faults), v.message[:300])
            console.print(t)
            console.print(f"replay: {self.violations[0].replay}")


__all__ = ["OtherCheck", "RunReport", "Violation"]

"""The fault model of the reliability harness: what can go wrong, and where.

A *point* is a place between two steps of an operation, named ``<boundary>.<operation>.<when>``:

* ``psp.<hook>.before`` / ``psp.<hook>.after``: around a PSP plugin call (``psp.capture.after``
  means: the PSP applied the capture, its answer has not reached payweave yet);
* ``erp.<hook>.before`` / ``erp.<hook>.after`` and ``erp.read_changes.page``: around an ERP
  plugin call (BC write-back, sync reads);
* ``step.<name>``: between two steps of a flow (the previous step's outcome is committed, the
  next request has not started);
* ``webhook.receive``: while payweave records an incoming PSP webhook.
* ``webhook.recorded``: the service's path (group commit, answer, apply afterwards): after the
  event is committed, before it is applied.

A :class:`FaultPlan` says which :class:`FaultKind` fires at which point (and at which occurrence
of it); the :class:`FaultController` is asked at every point by the instrumented plugin wrappers
(:mod:`payweave.core.reliability.chaos`), the store hook and the flow runner, and fires what is
due. Everything it fired is counted for the report.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    CRASH = "crash"
    """In-process: the serving "process" is abandoned mid-operation (the engine object is
    dropped, the store closed and opened again); nothing after the point runs."""
    SIGKILL = "sigkill"
    """A real process is killed with SIGKILL at the point (subprocess schedules)."""
    PSP_TIMEOUT_AFTER_SUCCESS = "psp_timeout_after_success"
    """The PSP applied the operation, then its answer was lost (read timeout)."""
    PSP_5XX = "psp_5xx"
    """The PSP answered 5xx before doing anything."""
    PSP_429 = "psp_429"
    """The PSP answered 429 with Retry-After before doing anything."""
    BC_429 = "bc_429"
    """Business Central answered 429 with Retry-After (sandbox fault endpoint)."""
    BC_503 = "bc_503"
    """Business Central answered 503 with Retry-After (sandbox fault endpoint)."""
    BC_DROP_AFTER_APPLY = "bc_drop_after_apply"
    """Business Central applied the request, then the connection dropped before the body."""
    DB_DROP = "db_drop"
    """The database connection dropped under the next statement (SQLite: the driver raises a
    disconnect; PostgreSQL: the backend is killed with pg_terminate_backend)."""
    WEBHOOK_RACE = "webhook_race"
    """The PSP's webhook for the call is delivered while the synchronous answer is in flight."""
    WEBHOOK_DUPLICATE = "webhook_duplicate"
    """A webhook is delivered again (at-least-once delivery)."""
    WEBHOOK_REORDER = "webhook_reorder"
    """Webhooks are delivered out of order (a late ``authorized`` after ``captured``)."""


#: What may fire at each kind of point.
KINDS_AT: dict[str, tuple[FaultKind, ...]] = {
    "psp.before": (FaultKind.CRASH, FaultKind.PSP_5XX, FaultKind.PSP_429),
    "psp.after": (FaultKind.CRASH, FaultKind.PSP_TIMEOUT_AFTER_SUCCESS, FaultKind.DB_DROP, FaultKind.WEBHOOK_RACE),
    "erp.before": (FaultKind.CRASH, FaultKind.BC_429, FaultKind.BC_503, FaultKind.BC_DROP_AFTER_APPLY),
    "erp.after": (FaultKind.CRASH, FaultKind.DB_DROP),
    "erp.page": (FaultKind.CRASH, FaultKind.BC_429, FaultKind.BC_503),
    "step": (FaultKind.CRASH, FaultKind.DB_DROP),
    "webhook": (FaultKind.CRASH, FaultKind.DB_DROP),
}


def point_class(point: str) -> str:
    """``psp.capture.after`` -> ``psp.after``; ``step.capture-1`` -> ``step``."""
    parts = point.split(".")
    if parts[0] == "step":
        return "step"
    if parts[0] == "webhook":
        return "webhook"
    if parts[0] == "erp" and parts[-1] == "page":
        return "erp.page"
    return f"{parts[0]}.{parts[-1]}"


class SimulatedCrash(BaseException):
    """Raised at a crash point. A BaseException, so no ``except Exception`` in payweave swallows
    it: the operation stops dead like a killed process, and only ``finally`` blocks (lock
    releases, rollbacks: what the kernel and the database do for a dead process) run."""

    def __init__(self, point: str) -> None:
        super().__init__(f"simulated crash at {point}")
        self.point = point


@dataclass
class PlannedFault:
    point: str
    kind: FaultKind
    occurrence: int = 1
    """Fire at the n-th time the point is reached in this schedule."""
    fired: bool = False


@dataclass
class FaultPlan:
    faults: list[PlannedFault] = field(default_factory=list)

    def describe(self) -> list[str]:
        return [f"{f.kind.value}@{f.point}#{f.occurrence}" + ("" if f.fired else " (not reached)") for f in self.faults]


class FaultController:
    """Asked at every point; fires the planned faults and counts everything.

    Handlers for kinds that need the world (arm a DB drop, inject a BC fault, start a webhook
    race) are registered by the runner with :meth:`on`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._seen: Counter[str] = Counter()
        self._handlers: dict[FaultKind, Callable[[str, dict[str, Any]], None]] = {}
        #: every fault fired, over the whole run: kind -> count
        self.fired: Counter[str] = Counter()
        #: (flow, point class, kind) -> count, over the whole run
        self.coverage: Counter[tuple[str, str, str]] = Counter()
        self.flow = "-"
        #: the kill hook of subprocess schedules (writes the marker and waits to be killed)
        self.kill: Callable[[str], None] | None = None

    def on(self, kind: FaultKind, handler: Callable[[str, dict[str, Any]], None]) -> None:
        self._handlers[kind] = handler

    def arm(self, plan: FaultPlan, flow: str) -> None:
        with self._lock:
            self.plan = plan
            self.flow = flow
            self._seen.clear()

    def disarm(self) -> None:
        with self._lock:
            self.plan = FaultPlan()
            self._seen.clear()

    def due(self, point: str) -> list[PlannedFault]:
        with self._lock:
            self._seen[point] += 1
            n = self._seen[point]
            due = [f for f in self.plan.faults if not f.fired and f.point == point and f.occurrence == n]
            for f in due:
                f.fired = True
                self.fired[f.kind.value] += 1
                self.coverage[(self.flow, point_class(point), f.kind.value)] += 1
        return due

    def reached(self, point: str, **context: Any) -> None:
        """Fire what is due at ``point``. A crash is raised last, after the other kinds acted."""
        crash: PlannedFault | None = None
        for fault in self.due(point):
            if fault.kind in (FaultKind.CRASH, FaultKind.SIGKILL):
                crash = fault
                continue
            handler = self._handlers.get(fault.kind)
            if handler is None:
                raise RuntimeError(f"no handler for fault {fault.kind.value} at {point}")
            handler(point, context)
        if crash is not None:
            if self.kill is not None:
                self.kill(point)
            raise SimulatedCrash(point)


__all__ = ["KINDS_AT", "FaultController", "FaultKind", "FaultPlan", "PlannedFault", "SimulatedCrash", "point_class"]

"""One randomized fault schedule, in-process: a flow, faults at chosen points, recovery, checks.

A schedule is fully determined by its seed (``random.Random(seed)`` picks the flow, its amounts
and ids, the faults and where they fire, and when and how webhooks are delivered), so a failing
schedule is replayed with ``payweave reliability --schedule SEED``.

The client side of each step behaves as a BC extension does: it repeats a request that got no
answer (a crash, a timeout, a 5xx, a dropped database connection) with the same request id,
after moving the clock as far as the answer's Retry-After asked.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from payweave.core.store import JobRow, TransactionRow
from payweave.hooks.errors import PayweaveError

from .checker import check_schedule, snapshot
from .faults import KINDS_AT, FaultController, FaultKind, FaultPlan, PlannedFault, SimulatedCrash, point_class
from .flows import BUILDERS, FLOWS, WEIGHTS, Ctx, Flow, Step
from .world import Delivery, World, _is_db_error

MAX_ATTEMPTS = 25
#: BC flows per BC company before a run moves on to a new one (see World.rotate_bc)
BC_ROTATE = 120
SETTLE_ROUNDS = 40


@dataclass
class ScheduleOutcome:
    seed: int
    flow: str
    mode: str
    faults: list[str] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    seconds: float = 0.0
    backend: str = "sqlite"
    matrix: str | None = None
    """For a matrix schedule: ``flow/point class/fault kind``."""

    @property
    def ok(self) -> bool:
        return not self.violations


def schedule_seed(run_seed: int, index: int) -> int:
    """The seed of schedule ``index`` of a run (stable: same run seed, same schedules)."""
    return (run_seed * 1_000_003 + index * 7_919) % (2**53)


#: Matrix seeds are negative: ``-(n * MATRIX_SLOTS + entry)``.
MATRIX_SLOTS = 4096


def fault_matrix() -> list[tuple[str, str, FaultKind]]:
    """Every fault kind at every kind of point of every flow: (flow, point class, fault kind).

    The first schedules of a run go through this matrix (one fault each, at a point of that class
    chosen by the schedule's seed), so each run injects every fault between every pair of steps
    of every operation at least once; the rest of the run is random."""
    out: list[tuple[str, str, FaultKind]] = []
    for flow in FLOWS:
        classes = ["step", "psp.before", "psp.after", "webhook"]
        if flow in ("writeback", "sync"):
            classes += ["erp.before", "erp.after"]
        if flow == "sync":
            classes.append("erp.page")
        for cls in classes:
            out += [(flow, cls, kind) for kind in KINDS_AT[cls]]
    return out


def matrix_seed(run_seed: int, entry: int) -> int:
    return -(((run_seed * 7_919) % (2**40)) * MATRIX_SLOTS + entry)


def plan_faults(rng: random.Random, flow: Flow) -> FaultPlan:
    points = flow.points
    plan = FaultPlan()
    for _ in range(rng.choices([1, 2, 3], weights=[5, 3, 2])[0]):
        point = rng.choice(points)
        kind = rng.choice(KINDS_AT[point_class(point)])
        plan.faults.append(PlannedFault(point, kind, 1 if rng.random() < 0.85 else 2))
    return plan


class ScheduleRunner:
    def __init__(self, world: World, controller: FaultController) -> None:
        self.world = world
        self.controller = controller
        world.install_fault_handlers()

    # ------------------------------------------------------------------ one schedule
    def run(self, seed: int, *, flow: str | None = None, faults: list[tuple[str, FaultKind]] | None = None) -> ScheduleOutcome:
        """Run schedule ``seed``; ``flow`` and ``faults`` ((point or point class, kind), fired at
        the first occurrence) override what the seed would pick (targeted tests)."""
        started = time.perf_counter()
        world = self.world
        rng = random.Random(seed)
        forced: tuple[str, str, FaultKind] | None = None
        if seed < 0:
            matrix = fault_matrix()
            forced = matrix[(-seed % MATRIX_SLOTS) % len(matrix)]
            kind = forced[0]
        else:
            kind = rng.choices(FLOWS, weights=[WEIGHTS[f] for f in FLOWS])[0]
        kind = flow or kind
        rng = random.Random(f"{seed}/{kind}")  # the flow's ids and amounts: distinct per (seed, flow)
        ctx = Ctx(world, rng, abs(seed), kind)
        if kind in ("writeback", "sync") and world.config.bc:
            world.bc_flows += 1
            if world.bc_flows % BC_ROTATE == 0:
                world.rotate_bc()
        outcome = ScheduleOutcome(seed=seed, flow=kind, mode="in-process",
                                  backend="postgresql" if world.is_postgres else "sqlite")
        before = snapshot(world)
        restarts = world.restarts
        flow_ = BUILDERS[kind](ctx)
        if faults is not None:
            planned = []
            for where, fault_kind in faults:
                points = [p for p in flow_.points if p == where or point_class(p) == where]
                planned.append(PlannedFault(rng.choice(points) if points else where, fault_kind))
            plan = FaultPlan(planned)
        elif forced is not None:
            candidates = [p for p in flow_.points if point_class(p) == forced[1]]
            plan = FaultPlan([PlannedFault(rng.choice(candidates), forced[2])] if candidates else [])
            outcome.matrix = "/".join((forced[0], forced[1], forced[2].value))
        else:
            plan = plan_faults(rng, flow_)
        world.rng = rng  # type: ignore[attr-defined]
        world.redeliver = []
        self.controller.arm(plan, kind)
        try:
            for step in flow_.steps:
                done = self._step(ctx, step, outcome)
                world.join_races()
                self._webhooks(rng, rng.random() < 0.5)
                if not done:
                    break
            finish = getattr(flow_, "finish", None)
            if finish is not None:
                finish(flow_.intents)
            self._settle(rng, flow_, outcome)
        finally:
            self.controller.disarm()
            world.proc.db.disarm()
            world.bc_state.faults.clear()
            world.join_races()
        outcome.faults = [d for d in plan.describe() if "not reached" not in d]
        result = check_schedule(world, flow_, before)
        outcome.checked = result.checked
        outcome.violations += result.violations
        outcome.restarts = world.restarts - restarts
        outcome.seconds = time.perf_counter() - started
        return outcome

    # ------------------------------------------------------------------ the client
    def _step(self, ctx: Ctx, step: Step, outcome: ScheduleOutcome) -> bool:
        world = self.world
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                self.controller.reached(f"step.{step.name}")
                step.run()
                return True
            except SimulatedCrash:
                world.join_races()
                world.restart()
                if ctx.rng.random() < 0.5:
                    self._recover()
            except PayweaveError as exc:
                last = f"{exc.code}: {exc.message}"
                if not exc.retryable:
                    outcome.violations.append(("intent_exactly_once",
                                                f"step {step.name} was refused: {exc.code}: {exc.message}"))
                    return False
                after = getattr(exc, "retry_after", None)
                # as a client backs off: what the answer asked for, else exponentially (a crashed
                # process's lease on a write-back, for one, lasts minutes)
                world.clock.advance(after if isinstance(after, timedelta) else timedelta(seconds=min(2 ** attempt, 300)))
                if attempt % 3 == 2:
                    self._recover()
            except LookupError as exc:  # the previous step's effect is not visible yet (it will be after recovery)
                last = str(exc)
                self._recover()
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
                last = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                world.clock.advance(1)
        outcome.violations.append(("settled", f"step {step.name} did not complete after {MAX_ATTEMPTS} attempts "
                                              f"(last answer: {last})"))
        return False

    def _recover(self) -> None:
        world = self.world
        try:
            world.recover_once()
        except SimulatedCrash:
            world.join_races()
            world.restart()
        except PayweaveError:
            pass  # recorded on the operation or job; the next round goes on
        except Exception as exc:
            if not _is_db_error(exc):
                raise

    # ------------------------------------------------------------------ the PSP's webhooks
    def _webhooks(self, rng: random.Random, now: bool) -> None:
        world = self.world
        if not now:
            return
        batch: list[Delivery] = world.pending_webhooks() + world.redeliver
        world.redeliver = []
        if not batch:
            return
        order = list(batch)
        rng.shuffle(order)
        if [d.event_id for d in order] != [d.event_id for d in batch]:
            self.controller.fired[FaultKind.WEBHOOK_REORDER.value] += 1
            self.controller.coverage[(self.controller.flow, "webhook", FaultKind.WEBHOOK_REORDER.value)] += 1
        for delivery in order:
            copies = 2 if rng.random() < 0.25 else 1
            if copies > 1:
                self.controller.fired[FaultKind.WEBHOOK_DUPLICATE.value] += 1
                self.controller.coverage[(self.controller.flow, "webhook", FaultKind.WEBHOOK_DUPLICATE.value)] += 1
            for _ in range(copies):
                if not world.deliver(delivery):
                    world.redeliver.append(delivery)
                    break

    # ------------------------------------------------------------------ recovery until quiet
    def _tx_ids(self, flow: Flow) -> list[str]:
        with self.world.engine.store.transaction() as s:
            ids: list[str] = []
            for company, doc_type, doc_id in flow.documents:
                ids += list(s.scalars(select(TransactionRow.id).where(
                    TransactionRow.company_id == company, TransactionRow.document_type == doc_type,
                    TransactionRow.document_id == doc_id)))
            return ids

    def _settle(self, rng: random.Random, flow: Flow, outcome: ScheduleOutcome) -> None:
        world = self.world
        busy: list[str] = []
        for round_no in range(SETTLE_ROUNDS):
            if round_no == SETTLE_ROUNDS // 2:
                self.controller.disarm()  # faults not reached by now stay unfired
            self._webhooks(rng, True)
            world.join_races()
            self._recover()
            world.join_races()
            try:
                busy = world.quiescent(self._tx_ids(flow))
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
                busy = ["database unavailable"]
            if not busy and not world.redeliver and not world.pending_webhooks_waiting():
                break
            world.clock.advance(self._next_due())
        else:
            outcome.violations.append(("settled", f"still in flight after recovery: {'; '.join(busy[:5])}"))
        # late duplicates of everything the PSP sent (at-least-once), then a last recovery
        for delivery in list(world.recent)[-6:]:
            if rng.random() < 0.3:
                self.controller.fired[FaultKind.WEBHOOK_DUPLICATE.value] += 1
                world.deliver(delivery)
        self._webhooks(rng, True)
        self._recover()

    def _next_due(self) -> timedelta:
        """Move the clock to the next due job (at least 90 s, at most an hour)."""
        world = self.world
        now = world.clock.now()
        with world.engine.store.transaction() as s:
            due = s.scalars(select(JobRow.due_at).where(JobRow.status == "pending", JobRow.due_at > now)
                            .order_by(JobRow.due_at).limit(1)).first()
        step = timedelta(seconds=90)
        if due is not None:
            step = max(step, min(due - now + timedelta(seconds=1), timedelta(hours=1)))
        return step


def run_many(world: World, controller: FaultController, seeds: list[int], *, on_result: Any = None) -> list[ScheduleOutcome]:
    runner = ScheduleRunner(world, controller)
    results = []
    for seed in seeds:
        result = runner.run(seed)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


__all__ = ["ScheduleOutcome", "ScheduleRunner", "plan_faults", "run_many", "schedule_seed"]

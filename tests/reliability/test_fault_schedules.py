"""The CI size of ``payweave reliability``: at least 500 randomized in-process fault schedules and
20 real-SIGKILL schedules over capture, void, refund, credit, payment links, BC write-back and
sync; after each, the PSP's ledger, payweave's store and BC's books must agree (exactly one
effect per intended operation).

The run seed is random per CI run and printed; ``PAYWEAVE_RELIABILITY_SEED`` pins it, and
``payweave reliability --seed N`` (or ``--schedule SEED`` for one schedule) replays it. With
``PAYWEAVE_TEST_POSTGRES_URL`` one schedule in four runs on PostgreSQL (a dropped connection is
then a backend killed with pg_terminate_backend). The soak size is the documented command
``payweave reliability --size soak`` (docs/reliability.md).
"""
from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from payweave.core.reliability.checker import INVARIANTS
from payweave.core.reliability.faults import FaultKind
from payweave.core.reliability.flows import FLOWS
from payweave.core.reliability.runner import POSTGRES_ENV, SIZES, RunConfig, run

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.slow


def test_ci_fault_schedules_lose_no_payment_and_move_no_money_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("PAYWEAVE_RELIABILITY_SEED") or random.SystemRandom().randrange(1, 2**31))
    size = SIZES["ci"]
    with capsys.disabled():
        print(f"\nreliability run seed {seed} (replay: payweave reliability --seed {seed})", flush=True)
    report = run(RunConfig(size="ci", seed=seed, jobs=2, workdir=tmp_path,
                           postgres_url=os.environ.get(POSTGRES_ENV) or None))
    ARTIFACTS.mkdir(exist_ok=True)
    report.write_json(ARTIFACTS / "reliability-ci.json")

    broken = [f"[{v.invariant}] seed {v.seed} {v.mode}/{v.flow} {v.faults}: {v.message} (replay: {v.replay})"
              for v in report.violations[:10]]
    failed_checks = [f"{c.name}: {c.detail}" for c in report.other if not c.ok]
    assert report.ok, (f"run seed {seed}: {len(report.violations)} violation(s), leaks {report.leaks[:3]}, "
                       f"failed checks {failed_checks}:\n" + "\n".join(broken))

    # what was tried: the sizes, every operation kind, every fault kind, every invariant
    assert report.count("in-process") >= size.schedules and report.count("sigkill") >= size.sigkill, report.schedules
    in_process = Counter(f for (m, f), n in report.schedules.items() for _ in range(n) if m == "in-process")
    assert set(in_process) == set(FLOWS), in_process
    fired = Counter(report.faults)
    fired[FaultKind.SIGKILL.value] = sum(report.killed_at.values())
    rare = {FaultKind.BC_DROP_AFTER_APPLY.value, FaultKind.BC_429.value, FaultKind.BC_503.value}
    for kind in FaultKind:
        assert fired[kind.value] >= (1 if kind.value in rare else 5), f"seed {seed}: {kind.value} fired {fired[kind.value]}x"
    assert sum(report.killed_at.values()) >= size.sigkill * 3 // 4, f"seed {seed}: kills {report.killed_at}"
    for name in INVARIANTS:
        assert report.invariants[name] >= (50 if name == "bc_exactly_once" else size.schedules), (name, report.invariants)
    # faults fired between every pair of steps of each operation: before and after its PSP call,
    # at the step boundaries, at webhook delivery; BC calls for write-back and sync
    points = {(flow, point) for flow, point, _ in report.coverage}
    for flow in FLOWS:
        wanted = {"psp.before", "psp.after", "step"} | ({"erp.before", "erp.after"} if flow in ("writeback", "sync") else set())
        missing = {p for p in wanted if (flow, p) not in points}
        assert not missing, f"seed {seed}: no fault fired at {missing} of {flow}"
    assert report.db_drops >= 20 and report.restarts >= 100, (report.db_drops, report.restarts)
    assert report.bc_retry_after, "BC's Retry-After was never exercised"
    assert report.log_lines > 1000 and report.secrets_checked >= 10
    summary = json.loads((ARTIFACTS / "reliability-ci.json").read_text())
    assert summary["ok"] is True and summary["seed"] == seed

"""A whole reliability run: in-process fault schedules (in worker processes), real-SIGKILL
schedules, the static and secret checks, and the report.

Sizes: ``ci`` = 500 in-process + 20 SIGKILL schedules (a few minutes on 2 cores), ``soak`` =
10,000 + 200, ``smoke`` = 40 + 4. With a PostgreSQL URL a share of the in-process schedules
(``pg_share``, 1 in 8 by default) runs on PostgreSQL, where a dropped connection is a backend
killed with ``pg_terminate_backend``; the rest run on a SQLite file.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import random
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultController
from .report import OtherCheck, RunReport
from .schedule import ScheduleOutcome, fault_matrix, matrix_seed, schedule_seed

POSTGRES_ENV = "PAYWEAVE_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class Size:
    name: str
    schedules: int
    sigkill: int


SIZES = {
    "smoke": Size("smoke", 40, 4),
    "ci": Size("ci", 500, 20),
    "soak": Size("soak", 10_000, 200),
}


@dataclass
class RunConfig:
    size: str = "ci"
    seed: int | None = None
    jobs: int = 2
    workdir: Path | None = None
    postgres_url: str | None = None
    schedules: int | None = None
    sigkill: int | None = None
    only: list[int] = field(default_factory=list)
    """Replay these in-process schedule seeds only."""
    only_sigkill: list[int] = field(default_factory=list)
    backend: str | None = None
    """Force the backend of replayed schedules (``sqlite`` / ``postgresql``)."""
    pg_share: int = 8
    """Every ``pg_share``-th in-process schedule runs on PostgreSQL (when a URL is given)."""


def default_workdir() -> Path:
    """A tmpfs when there is one: SIGKILL and crash tests need no fsync (the OS keeps a killed
    process's writes), and the disk's fsync latency would only slow the run down."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="payweave-reliability-", dir=base))


# ====================================================================== worker processes
def _route_stdlib_logging(stream: Any) -> Callable[[], None]:
    """Send stdlib logging (uvicorn, httpx, the sandboxes) to ``stream``; returns the undo."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names})
    root.handlers[:] = [logging.StreamHandler(stream)]
    root.setLevel(logging.INFO)
    for name in names:
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True

    def undo() -> None:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, (handlers, propagate) in saved[2].items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate

    return undo


def _worker_main(index: int, items: list[tuple[int, str]], workdir: str, postgres_url: str | None,
                 out: Any) -> None:
    from payweave.core.logging import configure

    from .schedule import ScheduleRunner
    from .world import SecretScanner, World, WorldConfig

    try:
        scanner = SecretScanner()
        configure("json", "INFO", stream=scanner)
        _route_stdlib_logging(scanner)
        controller = FaultController()
        worlds: dict[str, World] = {}
        runners: dict[str, ScheduleRunner] = {}
        for backend in sorted({b for _, b in items}):
            url = postgres_url if backend == "postgresql" else None
            worlds[backend] = World(WorldConfig(Path(workdir), database_url=url), controller, scanner=scanner)
            runners[backend] = ScheduleRunner(worlds[backend], controller)
        _route_stdlib_logging(scanner)  # after the sandboxes' uvicorn configured its loggers
        for seed, backend in items:
            try:
                outcome = runners[backend].run(seed)
            except Exception as exc:  # a harness error: report it as such, go on
                outcome = ScheduleOutcome(seed=seed, flow="?", mode="in-process", backend=backend)
                outcome.violations.append(("harness", f"{type(exc).__name__}: {exc} {traceback.format_exc()[-1500:]}"))
            out.put(("outcome", outcome))
        stats = {
            "fired": dict(controller.fired), "coverage": dict(controller.coverage),
            "restarts": sum(w.restarts for w in worlds.values()),
            "db_drops": sum(w.db_drops for w in worlds.values()),
            "bc_waits": [x for w in worlds.values() for x in w.retry_after_waits],
            "log_lines": scanner.lines, "log_bytes": scanner.bytes, "secrets": len(scanner.secrets),
            "leaks": [f"{name}: ...{context}..." for name, context in scanner.leaks],
            "settings_reprs": [_repr_check(w) for w in worlds.values()],
        }
        for world in worlds.values():
            world.close()
        out.put(("stats", stats))
    except BaseException as exc:  # noqa: BLE001 - tell the parent, never hang it
        out.put(("error", f"worker {index}: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"))


def _repr_check(world: Any) -> list[str]:
    """Secrets never in reprs/str of the settings and accounts."""
    shown = [repr(world.settings), str(world.settings)]
    accounts = [world.engine.account("psp_chaos", world.account(profile)) for profile in world.ledgers]
    accounts.append(world.engine.plugins.account("erp_chaos", "default"))
    for account in accounts:
        shown += [repr(account), str(account), repr(account.settings), str(account.settings)]
    texts = "\n".join(shown)
    return [name for name, value in world.scanner.secrets.items() if value in texts]


# ====================================================================== the run
def run(config: RunConfig, *, progress: Callable[[str, int, int], None] | None = None) -> RunReport:
    size = SIZES[config.size]
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(1, 2**31)
    report = RunReport(size="replay" if config.only or config.only_sigkill else config.size, seed=seed)
    started = time.perf_counter()
    workdir = config.workdir or default_workdir()
    own_workdir = config.workdir is None
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if config.only or config.only_sigkill:
            items = [(s, config.backend or "sqlite") for s in config.only]
            kill_seeds = list(config.only_sigkill)
        else:
            n = config.schedules if config.schedules is not None else size.schedules
            matrix = fault_matrix()
            # first every fault at every kind of point of every flow, then random schedules
            seeds = [matrix_seed(seed, e) for e in range(min(len(matrix), n))]
            seeds += [schedule_seed(seed, i) for i in range(n - len(seeds))]
            items = []
            for i, schedule in enumerate(seeds):
                backend = "postgresql" if config.postgres_url and i % config.pg_share == config.pg_share - 1 else "sqlite"
                items.append((schedule, backend))
            k = config.sigkill if config.sigkill is not None else size.sigkill
            kill_seeds = [schedule_seed(seed + 1, i) for i in range(k)]
        if any(b == "postgresql" for _, b in items) and not config.postgres_url:
            raise ValueError("schedules on PostgreSQL need a PostgreSQL URL")
        # the SIGKILL schedules mostly wait (for processes to start, to reach their kill point, to
        # recover): they run here while the worker processes run the in-process schedules
        collect = _start_in_process(config, items, str(workdir), report, progress)
        try:
            if kill_seeds:
                _run_sigkill(kill_seeds, workdir, report, progress)
        finally:
            collect()
        _static_checks(report)
    finally:
        report.seconds = time.perf_counter() - started
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _start_in_process(config: RunConfig, items: list[tuple[int, str]], workdir: str, report: RunReport,
                      progress: Callable[[str, int, int], None] | None) -> Callable[[], None]:
    """Start the worker processes; the returned function waits for them and collects their results."""
    if not items:
        return lambda: None
    jobs = max(1, min(config.jobs, len(items)))
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    procs = []
    # each worker gets its share of each backend (PostgreSQL schedules cost more)
    chunks: list[list[tuple[int, str]]] = [[] for _ in range(jobs)]
    for backend in sorted({b for _, b in items}):
        for n, item in enumerate(i for i in items if i[1] == backend):
            chunks[n % jobs].append(item)
    for j in range(jobs):
        chunk = chunks[j]
        proc = ctx.Process(target=_worker_main, args=(j, chunk, workdir, config.postgres_url, out), daemon=True)
        proc.start()
        procs.append(proc)
    lock = threading.Lock()
    state = {"done": 0, "stats": 0}
    errors: list[str] = []

    def drain() -> None:
        while state["stats"] + len(errors) < jobs:
            try:
                kind, payload = out.get(timeout=5)
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    errors.append("a worker process died without reporting")
                    break
                continue
            with lock:
                if kind == "outcome":
                    report.add(payload)
                    state["done"] += 1
                    if progress:
                        progress("in-process", state["done"], len(items))
                elif kind == "stats":
                    state["stats"] += 1
                    _add_stats(report, payload)
                else:
                    errors.append(payload)

    thread = threading.Thread(target=drain, name="reliability-results", daemon=True)
    thread.start()

    def collect() -> None:
        thread.join()
        for proc in procs:
            proc.join(30)
        for error in errors:
            report.other.append(OtherCheck("harness", False, error[-2000:]))
        if not any(c.name == "secrets never in reprs" for c in report.other):
            report.other.append(OtherCheck("secrets never in reprs", True,
                                           "settings, accounts and plugin settings of every world: no secret value shown"))

    report.lock = lock  # type: ignore[attr-defined]
    return collect


def _add_stats(report: RunReport, payload: dict[str, Any]) -> None:
    report.faults.update(payload["fired"])
    report.coverage.update(payload["coverage"])
    report.restarts += payload["restarts"]
    report.db_drops += payload["db_drops"]
    report.bc_retry_after += payload["bc_waits"]
    report.log_lines += payload["log_lines"]
    report.log_bytes += payload["log_bytes"]
    report.secrets_checked = max(report.secrets_checked, payload["secrets"])
    report.leaks += payload["leaks"]
    shown = sorted({name for names in payload["settings_reprs"] for name in names})
    if shown and not any(c.name == "secrets never in reprs" for c in report.other):
        report.other.append(OtherCheck("secrets never in reprs", False, f"shown: {', '.join(shown)}"))


def _run_sigkill(seeds: list[int], workdir: Path, report: RunReport,
                 progress: Callable[[str, int, int], None] | None) -> None:
    from payweave.core.logging import configure

    from .sigkill import SigkillRunner
    from .world import SecretScanner

    import structlog

    saved = structlog.get_config()
    scanner = SecretScanner()
    configure("json", "INFO", stream=scanner)
    try:
        runner = SigkillRunner(workdir, log_dir=workdir, scanner=scanner)
    except BaseException:
        structlog.configure(**saved)
        raise
    undo = _route_stdlib_logging(scanner)
    try:
        for i, seed in enumerate(seeds):
            try:
                outcome = runner.run(seed)
            except Exception as exc:
                outcome = ScheduleOutcome(seed=seed, flow="?", mode="sigkill")
                outcome.violations.append(("harness", f"{type(exc).__name__}: {exc} {traceback.format_exc()[-1500:]}"))
            with getattr(report, "lock", threading.Lock()):
                report.add(outcome)
            if progress:
                progress("sigkill", i + 1, len(seeds))
        orphans = runner.orphan_payments()
        report.invariants["one_payment"] += 1
        if orphans:
            from .report import Violation

            report.violations.append(Violation(seeds[0], "sigkill", "*", "sqlite", "one_payment",
                                               f"payments at the PSP no transaction knows: {orphans[:5]}", []))
    finally:
        runner.close()
        undo()
        structlog.configure(**saved)
    report.killed_at.update(runner.stats.killed)
    report.kill_not_reached += runner.stats.not_reached
    report.processes_started += runner.pool.started
    report.log_lines += scanner.lines
    report.log_bytes += scanner.bytes
    report.leaks += [f"{name}: ...{context}..." for name, context in scanner.leaks]


def _static_checks(report: RunReport) -> None:
    from .static import constant_time_findings, sql_findings

    findings, inspected = sql_findings()
    report.other.append(OtherCheck("no SQL built from strings", not findings,
                                   f"{inspected} SQL call sites in core and plugins inspected"
                                   + (": " + "; ".join(map(str, findings[:5])) if findings else "")))
    timing = constant_time_findings()
    report.other.append(OtherCheck("secret comparisons in constant time", not timing,
                                   "webhook signatures (psp_mock, psp_stripe_like), BC clientState, API keys use "
                                   "hmac.compare_digest" if not timing else "; ".join(map(str, timing))))


__all__ = ["POSTGRES_ENV", "SIZES", "RunConfig", "Size", "default_workdir", "run"]

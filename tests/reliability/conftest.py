"""Fixtures of the reliability tests (issue #11).

* ``postgres_url``: a migrated PostgreSQL schema of its own on the server named by
  ``PAYWEAVE_TEST_POSTGRES_URL`` (the pattern of core/tests/conftest.py); without the variable
  the PostgreSQL tests skip and say why.
* ``world``: the in-process reliability world (store, psp_mock behind the fault-injecting
  wrapper, BC sandbox on loopback, manual clock), parametrized over SQLite and PostgreSQL.
* ``processes``: start ``payweave serve`` / ``payweave worker`` subprocesses on 127.0.0.1 with
  their logs in files (scanned for secrets by the tests), stopped at the end.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from payweave.core.logging import configure
from payweave.core.reliability.faults import FaultController
from payweave.core.reliability.schedule import ScheduleRunner
from payweave.core.reliability.world import SecretScanner, World, WorldConfig
from payweave.core.testing.stores import postgres_schema_url

POSTGRES_ENV = "PAYWEAVE_TEST_POSTGRES_URL"
SKIP_PG = f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/payweave_test); it is not set"
PAYWEAVE = str(Path(sys.executable).with_name("payweave"))


@pytest.fixture(scope="session")
def postgres_base() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture
def postgres_url(postgres_base: str | None) -> Iterator[str]:
    """A migrated schema of its own for one test."""
    if not postgres_base:
        pytest.skip(SKIP_PG)
    with postgres_schema_url("pw_relt") as url:
        assert url is not None
        yield url


@pytest.fixture
def scanner() -> Iterator[SecretScanner]:
    """structlog to a scanner for the test (secrets are looked for in every line), restored after."""
    import structlog

    saved = structlog.get_config()
    scan = SecretScanner()
    configure("json", "INFO", stream=scan)
    yield scan
    structlog.configure(**saved)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path, scanner: SecretScanner, postgres_base: str | None) -> Iterator[World]:
    url = None
    if request.param == "postgresql":
        if not postgres_base:
            pytest.skip(SKIP_PG)
        url = postgres_base
    controller = FaultController()
    w = World(WorldConfig(tmp_path, database_url=url), controller, scanner=scanner)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def runner(world: World) -> ScheduleRunner:
    return ScheduleRunner(world, world.controller)


# ------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def sigkill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)


@dataclass
class Processes:
    tmp: Path
    env: dict[str, str]
    started: list[Proc] = field(default_factory=list)

    def _start(self, name: str, args: list[str], url: str | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - owned by the process record
        popen = subprocess.Popen([PAYWEAVE, *args], env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                 cwd=self.tmp)
        handle.close()
        proc = Proc(name, popen, log, url)
        self.started.append(proc)
        return proc

    def serve(self, name: str, port: int | None = None) -> Proc:
        port = port or free_port()
        proc = self._start(name, ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-job-worker",
                                  "--log-level", "warning"], url=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            assert proc.alive(), f"{name} exited: {proc.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{proc.url}/health", timeout=2).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{name} did not answer /health in 60 s: {proc.log.read_text()[-3000:]}"
            time.sleep(0.1)

    def worker(self, name: str, *args: str) -> Proc:
        return self._start(name, ["worker", "--name", name, *args])

    def logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace") for p in self.started if p.log.exists())

    def stop(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path, dict(os.environ))
    try:
        yield procs
    finally:
        procs.stop()

"""Shared by the workspace-level tests: the ``payweave`` CLI as a subprocess (``cli``), and one
run of ``payweave demo --fast`` per session (``demo_run``), which the demo's own tests and the
README's test both look at (the README's command is exactly this one)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

#: what the README tells a newcomer to run after the quick start (tests/test_readme.py checks it)
DEMO_ARGS = ("demo", "--fast", "--dir", "payweave-demo")


class Cli:
    """Runs ``payweave`` (the console script of this environment) in a clean environment: no
    ``PAYWEAVE_*`` variable of the caller leaks in, the environment's ``bin`` is first on PATH."""

    def __init__(self) -> None:
        beside = Path(sys.executable).with_name("payweave")
        found = str(beside) if beside.exists() else shutil.which("payweave")
        assert found, "the payweave console script is not installed in this environment"
        self.exe = found
        self.bin = str(Path(found).parent)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWEAVE_")}
        env["PATH"] = self.bin + os.pathsep + env.get("PATH", "")
        env["COLUMNS"] = "200"  # Rich wraps at 80 columns without a terminal
        env.pop("PAYWEAVE_CONFIG", None)
        env.update(extra or {})
        return env

    def run(self, args: list[str] | tuple[str, ...], *, cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], cwd=cwd, env=dict(env) if env is not None else self.env(),
                              capture_output=True, text=True, timeout=timeout)


@dataclass
class DemoRun:
    cwd: Path
    directory: Path
    args: tuple[str, ...]
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def explain(self) -> str:
        return f"exit code {self.result.returncode}\n--- stdout\n{self.result.stdout[-6000:]}\n--- stderr\n{self.result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def demo_run(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``payweave demo --fast --dir payweave-demo`` as a real subprocess, once per session."""
    cwd = tmp_path_factory.mktemp("demo-run")
    started = time.monotonic()
    result = cli.run(DEMO_ARGS, cwd=cwd, timeout=240)
    return DemoRun(cwd, cwd / "payweave-demo", DEMO_ARGS, result, time.monotonic() - started)

#!/usr/bin/env python3
"""payweave workspace runner: the README's quick start.

    python3 dev.py demo        # create/refresh .venv, then run `payweave demo`
    python3 dev.py test        # create/refresh .venv, then run the whole test suite
    python3 dev.py install     # only create/refresh .venv
    python3 dev.py bench       # run the benchmarks (see bench/README.md)
    python3 dev.py run ARGS    # run `payweave ARGS` inside the environment

Needs nothing but python3 (3.11+). The environment lives in .venv (or $PAYWEAVE_VENV) and is
reinstalled only when a pyproject.toml or requirements-dev.txt changed since the last install.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DISTRIBUTIONS = [
    "hooks",
    "core",
    "plugins/psp_mock",
    "plugins/psp_stripe_like",
    "plugins/erp_businesscentral",
]
VENV = Path(os.environ.get("PAYWEAVE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for rel in [*DISTRIBUTIONS, "."]:
        digest.update((ROOT / rel / "pyproject.toml").read_bytes())
    digest.update((ROOT / "requirements-dev.txt").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"payweave needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp = VENV / ".payweave-installed"
    fingerprint = _fingerprint()
    if PY.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print("installing payweave distributions (editable) and test tools", flush=True)
    cmd = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for rel in DISTRIBUTIONS:
        cmd += ["-e", str(ROOT / rel)]
    cmd += ["-r", str(ROOT / "requirements-dev.txt")]
    subprocess.run(cmd, check=True)
    stamp.write_text(fingerprint)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    if command == "install":
        return 0
    if command == "demo":
        return subprocess.call([str(BIN / "payweave"), "demo", *rest], env=env)
    if command == "run":
        return subprocess.call([str(BIN / "payweave"), *rest], env=env)
    if command == "test":
        return subprocess.call([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
    if command == "bench":
        return subprocess.call([str(PY), str(ROOT / "bench" / "run.py"), *rest], cwd=ROOT, env=env)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A PostgreSQL server for the benchmarks that need one.

``postgres_url()`` yields a SQLAlchemy URL: the server named by ``PAYWEAVE_BENCH_POSTGRES_URL``
(or ``PAYWEAVE_TEST_POSTGRES_URL``) when set, else a throwaway server started for the run with
Debian's ``initdb``/``pg_ctl`` in a temporary directory, listening on 127.0.0.1 only, stopped and
deleted afterwards. Yields ``None`` (with the reason in ``skip_reason``) when neither is possible.

The throwaway server keeps PostgreSQL's default durability (``fsync=on``,
``synchronous_commit=on``): latency figures are what a real deployment on this disk would see.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

ENV_NAMES = ("PAYWEAVE_BENCH_POSTGRES_URL", "PAYWEAVE_TEST_POSTGRES_URL")


@dataclass
class PgInfo:
    url: str | None
    origin: str  # "env:<NAME>" | "throwaway" | "none"
    skip_reason: str = ""
    settings: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()])
    for path in reversed(candidates):
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


@contextlib.contextmanager
def postgres_url() -> Iterator[PgInfo]:
    for name in ENV_NAMES:
        value = os.environ.get(name)
        if value:
            yield PgInfo(value, f"env:{name}")
            return
    pg_bin = _pg_bin()
    if pg_bin is None:
        yield PgInfo(None, "none", f"no PostgreSQL server: set {ENV_NAMES[0]} or install the postgresql package (initdb not found)")
        return
    as_root = os.geteuid() == 0
    if as_root:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            yield PgInfo(None, "none", "running as root and there is no 'postgres' user to run a throwaway server")
            return
    tmp = tempfile.mkdtemp(prefix="payweave-bench-pg-")
    data = os.path.join(tmp, "data")
    port = _free_port()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in cmd)]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    started = False
    info: PgInfo
    try:
        if as_root:
            shutil.chown(tmp, "postgres", "postgres")
        run(f"{pg_bin}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c max_connections=100"
        run(f"{pg_bin}/pg_ctl", "-D", data, "-l", os.path.join(tmp, "server.log"), "-w", "-o", opts, "start")
        started = True
        db = f"payweave_bench_{uuid.uuid4().hex[:8]}"
        run(f"{pg_bin}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-qc", f"CREATE DATABASE {db}")
        version = run(f"{pg_bin}/postgres", "--version").stdout.strip()
        info = PgInfo(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/{db}",
            "throwaway",
            settings={"server": version, "fsync": "on", "synchronous_commit": "on", "data_dir": tmp},
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = (getattr(exc, "stderr", "") or str(exc)).strip()
        info = PgInfo(None, "none", f"could not start a throwaway PostgreSQL server: {detail[:300]}")
    try:
        yield info
    finally:
        if started:
            with contextlib.suppress(Exception):
                run(f"{pg_bin}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)

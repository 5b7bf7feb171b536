"""The README cannot rot: every command in it is exercised here.

* Every ``sh`` code block is run like a shell session, top to bottom, in a fresh directory with
  a clean environment (``export`` sets variables, ``&`` starts a long-running command, which must
  answer on its port; everything started is stopped at the end of the block). Only what cannot
  run here as written is substituted, and each substitution is listed: the example ports become
  free ports, the example PostgreSQL URL becomes the test server's (``PAYWEAVE_TEST_POSTGRES_URL``,
  in a schema of its own) or a SQLite file, and placeholders the README explains
  (``TRANSACTION_ID``, ``pwk_<id>_<secret>``) become the real values printed before them.
* ``python3 dev.py ...`` is checked by running ``dev.py``'s own dispatch with the subprocess call
  recorded (it must map ``test`` to pytest rather than recurse, ``demo`` to ``payweave demo``,
  ``bench`` to ``bench/run.py``), and the command it maps to is run with ``--help``; the demo itself
  runs in tests/demo (``payweave demo --fast --dir payweave-demo`` is the same run, shared).
* Every ``toml`` block is validated by the settings models that would read it.
* Every ``payweave ...`` in inline code and the CLI reference names a real command (its
  ``--help`` runs), and every command ``payweave --help`` lists is in the CLI reference.
* Every relative link points at a file that exists.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
EXAMPLE_PG_URL = "postgresql+psycopg://payweave:secret@127.0.0.1:5432/payweave"
#: health paths of the long-running commands the README starts with ``&``
HEALTH = {"serve": "/health", "bc-sandbox": "/_sandbox/health", "stripe-sandbox": "/_sandbox/clock"}


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def logical_lines(body: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in body.splitlines():
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


SH_BLOCKS = blocks("sh")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_dev() -> Any:
    spec = importlib.util.spec_from_file_location("payweave_dev_script", ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dev_dispatch(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, Any]]]:
    """What ``python3 dev.py ARGV`` would run (nothing is installed or run)."""
    dev = load_dev()
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(dev, "ensure_env", lambda: None)
    monkeypatch.setattr(dev.subprocess, "call", lambda cmd, **kw: calls.append(([str(c) for c in cmd], kw)) or 0)
    assert dev.main(argv) == 0
    return calls


class Session:
    """One code block, run like a shell session."""

    def __init__(self, cli: Any, cwd: Path, block: str, monkeypatch: pytest.MonkeyPatch, demo_run: Any = None,
                 pg_url: str | None = None) -> None:
        self.cli = cli
        self.cwd = cwd
        self.env = cli.env({"PAYWEAVE_LOG_LEVEL": "WARNING"})
        self.monkeypatch = monkeypatch
        self.demo_run = demo_run
        self.background: list[tuple[list[str], subprocess.Popen[str], Path]] = []
        self.placeholders: dict[str, str] = {}
        self.substitutions: list[str] = []
        for port in sorted(set(re.findall(r"--port (\d+)", block))):
            new = str(free_port())
            self.placeholders[f"127.0.0.1:{port}"] = f"127.0.0.1:{new}"
            self.placeholders[f"--port {port}"] = f"--port {new}"
            self.substitutions.append(f"port {port} -> {new}")
        if EXAMPLE_PG_URL in block:
            target = pg_url or f"sqlite:///{(cwd / 'payweave.db').as_posix()}"
            self.placeholders[EXAMPLE_PG_URL] = target
            self.substitutions.append(f"database -> {'the test PostgreSQL schema' if pg_url else 'a SQLite file'}")

    # ------------------------------------------------------------------ running
    def sub(self, text: str) -> str:
        for old, new in self.placeholders.items():
            text = text.replace(old, new)
        return text

    def run_line(self, line: str) -> None:
        words = shlex.split(self.sub(line), comments=True)
        background = bool(words) and words[-1] == "&"
        if background:
            words.pop()
        if not words:
            return
        head = words[0]
        if head in (".", "source"):
            activate = ROOT / words[1]
            assert activate.is_file() or (Path(self.cli.bin) / "activate").is_file(), f"{line}: no {activate}"
            return  # the environment's bin is first on PATH already
        if head == "export":
            for assignment in words[1:]:
                key, _, value = assignment.partition("=")
                self.env[key] = value
            return
        if words[:2] == ["python3", "dev.py"]:
            check_dev_command(words[2:], self.cli, self.cwd, self.monkeypatch)
            return
        if head == "curl":
            result = subprocess.run(words, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            return
        assert head == "payweave", f"tests/test_readme.py does not know how to run README command: {line}"
        args = words[1:]
        if background:
            self.start(args, line)
            return
        if args[:1] == ["demo"]:
            self.demo(args, line)
            return
        result = self.cli.run(args, cwd=self.cwd, env=self.env, timeout=180)
        assert result.returncode == 0, f"{line}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        self.learn(args, result.stdout)

    def demo(self, args: list[str], line: str) -> None:
        assert self.demo_run is not None
        assert tuple(args) == self.demo_run.args, (
            f"the README runs `payweave {' '.join(args)}`; tests/conftest.py DEMO_ARGS must be the same command")
        assert self.demo_run.result.returncode == 0, self.demo_run.explain()
        assert self.cwd == self.demo_run.cwd

    def learn(self, args: list[str], stdout: str) -> None:
        """Values the README tells the reader to take from a command's output."""
        if args[:2] == ["keys", "create"]:
            key = stdout.strip().splitlines()[-1].strip()
            assert key.startswith("pwk_"), stdout
            self.placeholders["pwk_<id>_<secret>"] = key
        if args[:2] == ["tx", "list"]:
            found = re.findall(r"^([0-9a-f-]{36})\s", stdout, re.M)
            assert found, f"`payweave tx list` printed no transaction:\n{stdout}"
            self.placeholders["TRANSACTION_ID"] = found[0]

    def start(self, args: list[str], line: str) -> None:
        log = self.cwd / f"background-{len(self.background)}.log"
        handle = open(log, "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([self.cli.exe, *args], cwd=self.cwd, env=self.env, stdout=handle,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.background.append((args, proc, log))
        command = args[0]
        deadline = time.monotonic() + 90
        if command in HEALTH:
            port = args[args.index("--port") + 1]
            url = f"http://127.0.0.1:{port}{HEALTH[command]}"
            while True:
                assert proc.poll() is None, f"{line} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{line} did not answer {url}:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
        assert command == "worker", f"tests/test_readme.py does not know how to check `{line}`"
        while "running on" not in log.read_text():
            assert proc.poll() is None, f"{line} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{line} did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        problems = []
        for args, proc, log in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                    problems.append(f"`payweave {' '.join(args)}` ignored SIGTERM:\n{log.read_text()[-2000:]}")
            elif args[0] in HEALTH or args[0] == "worker":
                problems.append(f"`payweave {' '.join(args)}` stopped by itself:\n{log.read_text()[-2000:]}")
            if args[0] == "worker" and proc.returncode != 0:
                problems.append(f"`payweave worker` exited {proc.returncode} on SIGTERM:\n{log.read_text()[-2000:]}")
        self.background.clear()
        assert not problems, "\n".join(problems)


def check_dev_command(argv: list[str], cli: Any, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python3 dev.py ARGV``: the dispatch is right, and what it dispatches to works."""
    dev = load_dev()
    calls = dev_dispatch(argv, monkeypatch)
    assert len(calls) == 1, calls
    cmd, kw = calls[0]
    command = argv[0]
    if command == "test":
        assert cmd[1:3] == ["-m", "pytest"] and Path(kw["cwd"]) == dev.ROOT, cmd
        assert "dev.py" not in " ".join(cmd), f"`python3 dev.py test` must run pytest, not itself: {cmd}"
        return
    if command == "demo":
        assert Path(cmd[0]).name == "payweave" and cmd[1:] == ["demo", *argv[1:]], cmd
        result = cli.run(["demo", "--help"], cwd=cwd)
        assert result.returncode == 0 and "--fast" in result.stdout, result.stderr
        return
    if command == "bench":
        assert Path(cmd[1]) == ROOT / "bench" / "run.py" and cmd[2:] == argv[1:], cmd
        result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--help"], capture_output=True,
                                text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0 and "--size" in result.stdout, result.stderr
        return  # tests/test_bench_smoke.py runs `--size smoke` itself
    if command == "run":
        assert Path(cmd[0]).name == "payweave" and cmd[1:] == argv[1:], cmd
        return
    raise AssertionError(f"tests/test_readme.py does not know `python3 dev.py {' '.join(argv)}`")


@pytest.fixture
def pg_url() -> Iterator[str | None]:
    """A schema of its own on the test PostgreSQL server, or None without one."""
    base = os.environ.get("PAYWEAVE_TEST_POSTGRES_URL")
    if not base:
        yield None
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.schema import CreateSchema, DropSchema

    schema = f"pw_readme_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(CreateSchema(schema))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        admin.dispose()


# ============================================================================================ tests
def test_the_quick_start_is_the_two_commands():
    assert SH_BLOCKS, "the README has no sh code blocks"
    assert logical_lines(SH_BLOCKS[0]) == ["python3 dev.py demo", "python3 dev.py test"]


@pytest.mark.parametrize("index", range(len(SH_BLOCKS)),
                         ids=[f"block{i}-{(logical_lines(b) or ['empty'])[0][:40]}" for i, b in enumerate(SH_BLOCKS)])
def test_every_shell_block_runs(index, cli, tmp_path, monkeypatch, pg_url, request):
    block = SH_BLOCKS[index]
    demo_run = None
    cwd = tmp_path
    if re.search(r"^\s*payweave demo\b", block, re.M):
        demo_run = request.getfixturevalue("demo_run")
        cwd = demo_run.cwd
    session = Session(cli, cwd, block, monkeypatch, demo_run=demo_run, pg_url=pg_url)
    try:
        for line in logical_lines(block):
            session.run_line(line)
    finally:
        session.stop()
    print("substitutions:", session.substitutions or "none")


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_every_toml_block_is_valid_configuration(index):
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings

    data = tomllib.loads(blocks("toml")[index])
    settings = PayweaveSettings(**data)
    manager = PluginManager(settings)
    manager.load_entrypoints()
    for plugin, accounts in settings.accounts.items():
        for name in accounts:
            account = manager.account(plugin, name)  # the plugin's own settings model validates it
            assert account.settings is not None


def _click_tree() -> tuple[Any, dict[str, set[str]]]:
    """The CLI as click sees it: the root group and, per top-level command, its subcommands."""
    import typer.main

    from payweave.core.cli import app

    root = typer.main.get_command(app)
    assert hasattr(root, "commands"), root
    tree = {name: set(getattr(cmd, "commands", None) or ()) for name, cmd in root.commands.items()}
    return app, tree


def _command_words(code: str, tree: dict[str, set[str]]) -> list[str]:
    """``payweave tx show ID`` -> ``["tx", "show"]``: the command path, without its arguments."""
    words = code.split()[1:]
    if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
        return []  # `payweave --version`, `payweave ARGS`
    if tree.get(words[0]) and len(words) > 1:
        return words[:2]
    return words[:1]


def test_every_payweave_command_in_the_readme_exists_and_every_command_is_documented(cli, tmp_path):
    from typer.testing import CliRunner

    app, tree = _click_tree()
    listing = cli.run(["--help"], cwd=tmp_path)
    assert listing.returncode == 0
    for name in tree:
        assert name in listing.stdout, f"`payweave --help` does not list {name}"
    reference = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`payweave ([a-z][\w-]*|--version)", reference))
    assert set(tree) <= documented, f"commands missing from the README's CLI reference: {sorted(set(tree) - documented)}"
    assert documented <= set(tree) | {"--version"}, f"the CLI reference names unknown commands: {documented - set(tree)}"
    runner = CliRunner()
    checked: set[tuple[str, ...]] = set()
    for span in sorted(set(re.findall(r"`(payweave [^`]*)`", README))):
        words = _command_words(span, tree)
        if not words or tuple(words) in checked:
            continue
        assert words[0] in tree, f"`{span}` in the README is not a payweave command"
        if len(words) == 2:
            assert words[1] in tree[words[0]], f"`{span}` in the README: `payweave {words[0]}` has no `{words[1]}`"
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, f"`payweave {' '.join(words)} --help` failed: {result.output}"
        checked.add(tuple(words))
    version = cli.run(["--version"], cwd=tmp_path)
    assert version.returncode == 0 and "payweave-hooks" in version.stdout


def test_every_dev_py_command_in_the_readme_is_dispatched(monkeypatch, cli, tmp_path):
    for span in sorted(set(re.findall(r"`(python3 dev\.py [^`]*)`", README))):
        argv = shlex.split(span)[2:]
        if argv and argv[0] not in ("install", "run"):
            check_dev_command(argv, cli, tmp_path, monkeypatch)


def test_every_relative_link_exists():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_readme_links_the_guides():
    for doc in ("docs/writing-a-psp-plugin.md", "docs/capabilities.md", "docs/plugin-hooks.md", "docs/conformance.md",
                "docs/http-service.md", "docs/erp-sync.md", "bench/README.md"):
        assert f"]({doc})" in README, f"the README does not link {doc}"


def test_payweave_version_lists_every_distribution(cli, tmp_path):
    result = cli.run(["--version"], cwd=tmp_path)
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["payweave-workspace"]["members"]
    dists = {tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"] for m in workspace}
    assert names == dists, result.stdout
    assert all(len(line.split()) == 2 and line.split()[1] != "not" for line in result.stdout.splitlines() if line)

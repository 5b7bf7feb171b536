"""``payweave keys`` and ``payweave serve``: keys shown once and stored hashed, revocation, and
the service started by the command line answering on loopback with a key the CLI made."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from payweave.core.cli import app


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PAYWEAVE_DATABASE_URL": f"sqlite:///{tmp_path / 'payweave.db'}",
        "PAYWEAVE_PLUGINS": "psp_mock",
        "PAYWEAVE_API_KEY_PEPPER": "test-pepper-1",
        "PAYWEAVE_LOG_FORMAT": "json",
        "PAYWEAVE_LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYWEAVE_CONFIG", raising=False)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_keys_create_list_revoke(cli_env):
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--company", "CRONUS", "--name", "BC prod", "--json"])
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["key"].startswith(f"pwk_{data['id']}_") and data["company_id"] == "CRONUS"
    listed = runner.invoke(app, ["keys", "list", "--json"])
    [row] = json.loads(listed.output)
    assert row["id"] == data["id"] and row["revoked_at"] is None and data["key"] not in listed.output
    table = runner.invoke(app, ["keys", "list"])
    assert data["id"] in table.output and "active" in table.output
    revoked = runner.invoke(app, ["keys", "revoke", data["id"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)[0]["revoked_at"] is not None
    missing = runner.invoke(app, ["keys", "revoke", "0000000000000000"])
    assert missing.exit_code == 1
    bad_company = runner.invoke(app, ["keys", "create", "--company", ""])
    assert bad_company.exit_code == 2


def test_serve_answers_on_loopback_with_a_key_from_the_cli(cli_env, tmp_path):
    port = _free_port()
    runner = CliRunner()
    key = json.loads(runner.invoke(app, ["keys", "create", "--company", "CRONUS", "--json"]).output)["key"]
    env = {**os.environ, **cli_env}
    process = subprocess.Popen(
        [sys.executable, "-c", "from payweave.core.cli import main; main()", "serve", "--port", str(port), "--job-worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "payweave serve did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/ready").json() == {"status": "ok", "checks": {"store": "ok"}}
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["company_id"] == "CRONUS"
        assert httpx.get(f"{base}/v1/me").status_code == 401
        assert "payweave_job_backlog" in httpx.get(f"{base}/metrics").text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    assert process.returncode in (0, -signal.SIGINT, 130)

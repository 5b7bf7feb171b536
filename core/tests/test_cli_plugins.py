"""`payweave plugins` and `payweave --version`, run as a real subprocess against installed metadata."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE_DISTS = Path(__file__).parent / "fixtures" / "dists"
PAYWEAVE = shutil.which("payweave", path=str(Path(sys.executable).parent)) or "payweave"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWEAVE_")}
    full_env.update(env)
    full_env["COLUMNS"] = "200"
    return subprocess.run([PAYWEAVE, *args], capture_output=True, text=True, env=full_env, timeout=60)


def test_plugins_json_lists_name_distribution_version_kind_and_capabilities():
    result = run("plugins", "--json", PAYWEAVE_PLUGINS="psp_mock")
    assert result.returncode == 0, result.stderr
    report = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    mock = report["psp_mock"]
    assert mock["distribution"] == "payweave-psp-mock"
    assert mock["kind"] == "psp" and mock["status"] == "active"
    assert mock["version"]
    assert set(mock["features"]) >= {"reserve", "partial_refund", "pay_by_link"}
    assert mock["capabilities"]["refund"] in {"none", "full_only", "partial"}
    assert report["psp_stripe_like"]["status"] == "not_pinned"


def test_plugins_json_reports_broken_plugin_and_exits_nonzero():
    result = run(
        "plugins", "--json",
        PAYWEAVE_PLUGINS="psp_mock,fx_unknown_hook,fx_good",
        PYTHONPATH=str(FIXTURE_DISTS),
    )
    assert result.returncode == 1
    report = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert report["fx_unknown_hook"]["status"] == "broken"
    assert "implements unknown hook 'psp_captur'" in report["fx_unknown_hook"]["error"]
    assert "payweave_fx_unknown_hook 1.0" in report["fx_unknown_hook"]["error"]
    assert report["fx_good"]["status"] == "active"
    assert report["fx_good"]["features"]["auto_capture"] is True
    assert report["psp_mock"]["status"] == "active"


def test_plugins_table_shows_matrix_and_errors():
    result = run("plugins", PAYWEAVE_PLUGINS="psp_mock,fx_bad_caps", PYTHONPATH=str(FIXTURE_DISTS))
    out = result.stdout
    assert result.returncode == 1
    assert "payweave plugins" in out and "PSP capabilities" in out
    assert "payweave-psp-mock" in out and "broken" in out
    assert "partial refunds" in out  # a feature row of the matrix
    assert "error: Plugin 'fx_bad_caps' (distribution payweave_fx_bad_caps 1.0) declares an invalid capability model" in out


def test_empty_pin_lists_nothing_active():
    result = run("plugins", "--json", PAYWEAVE_PLUGINS="")
    assert result.returncode == 0
    assert {p["status"] for p in json.loads(result.stdout)["plugins"]} == {"not_pinned"}


def test_version_prints_every_distribution():
    result = run("--version")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["payweave", "payweave-hooks", "payweave-psp-mock", "payweave-psp-stripe-like", "payweave-erp-businesscentral"]
    assert all(line.split()[1][0].isdigit() for line in lines)


def test_help_is_useful():
    result = run("--help")
    assert result.returncode == 0
    for word in ("plugins", "Business Central", "PAYWEAVE_"):
        assert word in result.stdout


@pytest.mark.parametrize("fmt", ["json"])
def test_logs_are_json_when_not_a_tty(fmt):
    result = run("plugins", PAYWEAVE_PLUGINS="fx_import_error", PYTHONPATH=str(FIXTURE_DISTS), PAYWEAVE_LOG_FORMAT="auto")
    log_lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(l["event"] == "plugin.broken" and l["plugin"] == "fx_import_error" for l in log_lines)

"""`payweave conformance` and `payweave new-plugin` from the command line."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from payweave.core.cli import app
from payweave.hooks.capabilities import Feature

runner = CliRunner()


def test_conformance_command_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = runner.invoke(app, ["conformance", "psp_mock", "--profile", "no_void", "--strict", "--json", str(target)])
    assert result.exit_code == 0, result.output
    assert "refused correctly" in result.output and "CONFORMS" in result.output
    data = json.loads(target.read_text())
    assert data["ok"] and data["strict"] and data["settings"] == {"profile": "no_void"}
    void = next(f for f in data["features"] if f["feature"] == Feature.VOID.value)
    assert (void["declared"], void["status"]) == (False, "refused")


def test_conformance_command_json_on_stdout() -> None:
    result = runner.invoke(app, ["conformance", "psp_mock", "-s", "profile=minimal", "-s", "refund=partial", "--json", "-"])
    assert result.exit_code == 0
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["settings"] == {"profile": "minimal", "refund": "partial"}
    assert {f["feature"]: f["status"] for f in data["features"]}["partial_refund"] == "proven"


def test_conformance_command_exits_non_zero_on_failure(broken_plugins: Path) -> None:
    result = runner.invoke(app, ["conformance", "broken_bare_decline"])
    assert result.exit_code == 1
    assert "DOES NOT CONFORM" in result.output and "FAILED" in result.output


def test_conformance_command_rejects_an_unknown_setting() -> None:
    result = runner.invoke(app, ["conformance", "psp_mock", "--setting", "warp_speed=9"])
    assert result.exit_code != 0
    assert "warp_speed" in result.output


def test_new_plugin_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["new-plugin", "acme_pay", "--directory", str(tmp_path / "acme")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "acme" / "src" / "payweave" / "plugins" / "acme_pay" / "plugin.py").is_file()
    assert "payweave conformance acme_pay" in result.output and "[test]" in result.output
    again = runner.invoke(app, ["new-plugin", "acme_pay", "--directory", str(tmp_path / "acme")])
    assert again.exit_code == 2

"""``payweave connect | sync | status | accounts`` against the BC sandbox (configured the way a
user does: PAYWEAVE_* environment variables)."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from payweave.core.cli import app
from payweave.core.cli.app import console


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """The CLI's console is created once per process; give it a fixed width for these tests."""
    monkeypatch.setattr(console, "width", 160)


def _env(bc, tmp_path, **extra):
    return {**bc.env(), "PAYWEAVE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
            "PAYWEAVE_PLUGINS": "erp_businesscentral", "PAYWEAVE_SYNC_PAGE_SIZE": "20", "PAYWEAVE_LOG_LEVEL": "WARNING",
            "PAYWEAVE_CONFIG": "/dev/null", "COLUMNS": "160", **extra}


def test_connect_sync_status_and_accounts(bc, tmp_path):
    runner = CliRunner()
    env = _env(bc, tmp_path)
    cid = bc.company.id

    connect = runner.invoke(app, ["connect"], env=env)  # the sandbox's only company is picked
    assert connect.exit_code == 0, connect.output
    out = connect.output
    assert out.index("Last 12 months") < out.index("History") < out.index("Status: Connected")
    assert re.search(r"last 12 months +invoices .* records", out) and re.search(r"history +invoices .* records", out)
    assert f"({cid}): Connected" in out and "payweave accounts" in out

    status = runner.invoke(app, ["status"], env=env)
    assert status.exit_code == 0, status.output
    assert "Connected" in status.output and f"invoices {len(bc.invoices())}" in status.output
    assert "high-water mark" in status.output and "not set up" in status.output

    listing = runner.invoke(app, ["accounts"], env=env)
    assert listing.exit_code == 0 and "10900" in listing.output and "CHECKING" in listing.output
    bad = runner.invoke(app, ["accounts", "--payments", "CHECKING", "--bank", "CHECKING", "--fee", "60800"], env=env)
    assert bad.exit_code == 1 and "erp_account_setup_invalid" in bad.output
    saved = runner.invoke(app, ["accounts", "--payments", "10900", "--bank", "CHECKING", "--fee", "60800"], env=env)
    assert saved.exit_code == 0 and "Saved" in saved.output

    bc.pay(bc.open_invoice().id, "1.00")
    sync = runner.invoke(app, ["sync", "--json"], env=env)
    assert sync.exit_code == 0, sync.output
    report = json.loads(sync.output)
    assert report["status"] == "connected"
    assert {"phase": "delta", "entity": "invoices"}.items() <= next(
        s for s in report["streams"] if s["entity"] == "invoices").items()
    assert next(s for s in report["streams"] if s["entity"] == "invoices")["updated"] == 1

    full = runner.invoke(app, ["sync", "--full", "--json"], env=env)
    assert full.exit_code == 0
    assert any(s["phase"] == "full" and s["records"] == len(bc.invoices()) for s in json.loads(full.output)["streams"])

    as_json = runner.invoke(app, ["status", "--json"], env=env)
    [st] = json.loads(as_json.output)
    assert st["connection"]["status"] == "connected" and st["account_setup"]["fee_account"]["number"] == "60800"
    assert {c["stream"] for c in st["cursors"]} == {"recent", "history", "delta", "full"}


def test_cli_errors_are_one_line_with_the_code(bc, tmp_path):
    runner = CliRunner()
    env = _env(bc, tmp_path)
    result = runner.invoke(app, ["sync", "--company", "nope"], env=env)
    assert result.exit_code == 1 and "erp_connection_not_found" in result.output
    result = runner.invoke(app, ["connect", "--company", "00000000-0000-0000-0000-00000000abcd"], env=env)
    assert result.exit_code == 1 and "erp_company_unknown" in result.output
    result = runner.invoke(app, ["status"], env=env)
    assert result.exit_code == 0 and "No company is connected" in result.output

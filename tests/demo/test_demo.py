"""``payweave demo --fast`` as a newcomer runs it (a real subprocess, see ``demo_run`` in
tests/conftest.py): it exits 0 after every flow held, tells the story, leaves a database that
holds what it did, and ``payweave status`` / ``payweave tx`` work on it after the sandboxes are
gone."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

TX_ID = re.compile(r"payweave tx show ([0-9a-f-]{36})")


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_the_demo_runs_every_flow_and_exits_0(demo_run):
    assert demo_run.result.returncode == 0, demo_run.explain()
    out = demo_run.result.stdout
    for needle in (
        "Last 12 months (status: pending)", "History (status: pending)", "Status: Connected",
        "--fast: the sandbox holds only the last 12 months",
        "POST /v1/authorizations -> transaction", "partly cancelled -> voided", "posted -> captured",
        "status Paid, remainingAmount 0.00",                                   # BC, read back through its API
        "POST /v1/payment-links", "/pay/", "signed webhooks to /webhooks/psp_stripe_like/default",
        "refunded", "POST /v1/mandates", "without the customer",
        "the error the BC user sees", "document_feature_unsupported", "Invoice Discount Amount",
        "refused [document_feature_unsupported]",
        "records deposit PWD", "BC G/L entries of PWD",
        "late-capture job", "pass on payweave's clock and the PSP's", "(trigger late_capture)",
        "What the demo did", "All 7 flows held",
        "export PAYWEAVE_CONFIG=", "payweave status", "payweave tx list", "payweave tx show",
    ):
        assert needle in out, f"{needle!r} missing from the demo's output\n{demo_run.explain()}"
    assert "demo failed" not in demo_run.output
    assert demo_run.seconds < 60, f"payweave demo --fast took {demo_run.seconds:.1f} s (target: under 30 s)"


def test_the_database_holds_what_the_demo_did(demo_run):
    assert demo_run.result.returncode == 0, demo_run.explain()
    db = demo_run.directory / "payweave.db"
    assert db.is_file() and (demo_run.directory / "payweave.toml").is_file()
    assert (demo_run.directory / "payweave-demo.log").stat().st_size > 0  # payweave's own logs went there
    statuses = sorted(s for (s,) in _rows(db, "SELECT status FROM transactions"))
    assert statuses == ["captured", "captured", "captured", "partly_refunded"]
    assert _rows(db, "SELECT company_id, status FROM erp_connections") == [("CRONUS", "connected")]
    writebacks = sorted(_rows(db, "SELECT kind, status, substr(document_number, 1, 3) FROM erp_writebacks"))
    assert writebacks == [("deposit", "posted", "PWD")] + [("payment", "posted", "PWP")] * 3
    events = dict(_rows(db, "SELECT status, count(*) FROM erp_document_events GROUP BY status"))
    assert events.get("refused", 0) >= 1 and events.get("dispatched", 0) >= 8 and "pending" not in events
    assert _rows(db, "SELECT status FROM jobs WHERE kind = 'late_capture'") == [("done",)]
    assert not _rows(db, "SELECT id, kind, last_error FROM jobs WHERE status = 'failed'")
    assert len(_rows(db, "SELECT code FROM payment_methods")) == 4
    assert _rows(db, "SELECT status FROM payment_links") == [("completed",)]
    assert _rows(db, "SELECT count(*) FROM psp_events")[0][0] >= 3  # the PSP's signed webhooks, stored once each
    assert _rows(db, "SELECT status FROM mandates") == [("active",)]


def test_status_and_tx_work_after_the_demo_from_the_store_alone(demo_run, cli):
    assert demo_run.result.returncode == 0, demo_run.explain()
    env = cli.env({"PAYWEAVE_CONFIG": str(demo_run.directory / "payweave.toml")})
    status = cli.run(["status", "--json"], cwd=demo_run.cwd, env=env)
    assert status.returncode == 0, status.stderr
    [company] = json.loads(status.stdout)
    assert company["connection"]["status"] == "connected" and company["writebacks_by_status"] == {"posted": 4}
    text = cli.run(["status"], cwd=demo_run.cwd, env=env)
    assert text.returncode == 0 and "Connected" in text.stdout, text.stderr

    listed = cli.run(["tx", "list", "--json"], cwd=demo_run.cwd, env=env)
    assert listed.returncode == 0, listed.stderr
    ids = {t["id"] for t in json.loads(listed.stdout)}
    assert len(ids) == 4
    shown = TX_ID.findall(demo_run.result.stdout)
    assert shown and shown[0] in ids
    show = cli.run(["tx", "show", shown[0]], cwd=demo_run.cwd, env=env)
    assert show.returncode == 0, show.stderr
    assert "PSP operations" in show.stdout and "capture" in show.stdout and "void" in show.stdout

    by_url = cli.env({"PAYWEAVE_DATABASE_URL": f"sqlite:///{(demo_run.directory / 'payweave.db').as_posix()}"})
    again = cli.run(["tx", "list", "--json"], cwd=demo_run.cwd, env=by_url)
    assert again.returncode == 0 and {t["id"] for t in json.loads(again.stdout)} == ids


def test_a_directory_with_a_database_is_left_alone(demo_run, cli):
    db = demo_run.directory / "payweave.db"
    before = db.stat().st_mtime_ns
    result = cli.run(["demo", "--fast", "--dir", str(demo_run.directory)], cwd=demo_run.cwd)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "exists already" in result.stderr
    assert db.stat().st_mtime_ns == before

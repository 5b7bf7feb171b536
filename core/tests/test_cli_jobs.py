"""``payweave jobs list|retry|cancel`` and ``payweave worker --once`` against a real store."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from payweave.core.cli import app
from payweave.core.engine import TxStatus
from payweave.core.jobs.queue import JobKind, JobStatus
from payweave.core.testing.documents import document_event, item_line, posted_invoice, sales_document


def env_for(engine) -> dict[str, str]:
    return {
        "PAYWEAVE_DATABASE_URL": engine.store.url.render_as_string(hide_password=False),
        "PAYWEAVE_PLUGINS": "psp_mock",
        "PAYWEAVE_ACCOUNTS": json.dumps({"psp_mock": {"full": {"profile": "full"}}}),
    }


def test_jobs_list_retry_cancel(engine):
    with engine.store.transaction() as s:
        a = engine.jobs.enqueue(s, company_id="CRONUS", kind="erp_sync", payload={"entity": "invoices"}).id
        b = engine.jobs.enqueue(s, company_id="OTHER", kind="capture", payload={"transaction_id": "t"}).id
    (job,) = engine.jobs.claim("w", limit=1)
    engine.jobs.fail(job, code="job_kind_unknown", message="No handler is registered for job kind 'erp_sync'.", retryable=False)
    runner = CliRunner()
    env = env_for(engine)
    listed = runner.invoke(app, ["jobs", "list", "--status", "failed"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"#{a}" in listed.stdout and "erp_sync" in listed.stdout and "No handler is registered" in listed.stdout
    assert f"#{b}" not in listed.stdout
    data = json.loads(runner.invoke(app, ["jobs", "list", "--company", "OTHER", "--json"], env=env).stdout)
    assert [j["id"] for j in data["jobs"]] == [b]
    retried = runner.invoke(app, ["jobs", "retry", str(a)], env=env)
    assert retried.exit_code == 0 and "queued again" in retried.stdout
    assert engine.jobs.get(a).status is JobStatus.PENDING
    cancelled = runner.invoke(app, ["jobs", "cancel", str(b), "--company", "OTHER"], env=env)
    assert cancelled.exit_code == 0 and engine.jobs.get(b).status is JobStatus.CANCELLED
    again = runner.invoke(app, ["jobs", "cancel", str(b)], env=env)
    assert again.exit_code == 1 and "only pending or failed jobs can be cancelled" in again.output
    wrong_company = runner.invoke(app, ["jobs", "retry", str(a), "--company", "OTHER"], env=env)
    assert wrong_company.exit_code == 1 and f"There is no job {a}" in wrong_company.output
    bad = runner.invoke(app, ["jobs", "list", "--status", "sleeping"], env=env)
    assert bad.exit_code == 2


def test_worker_once_runs_due_jobs(engine, method, mock_ledger):
    code = method("full", capture_timing="job_queue")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "10.00")])
    tx = engine.handle_event(document_event("released", doc)).transaction
    engine.reserve("CRONUS", tx.id)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    # the CLI process is this process here: psp_mock's ledger is shared with the test
    result = CliRunner().invoke(app, ["worker", "--once", "--name", "cli-worker"], env=env_for(engine))
    assert result.exit_code == 0, result.output
    assert "job(s) run" in result.stdout
    (job,) = engine.jobs.list(kind=JobKind.CAPTURE)
    assert job.status is JobStatus.DONE
    assert engine.get_transaction("CRONUS", tx.id).status is TxStatus.CAPTURED
    assert mock_ledger().count("capture") == 1

"""Jobs that move money: late automatic capture, reservation renewal, expiry, capture and refund
via job queue, recovery, restarts. Time moves through the clocks (engine and psp_mock)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from payweave.core.engine import PaymentEngine, PaymentMethodSetup, TxStatus
from payweave.core.jobs.handlers import schedule_renewals
from payweave.core.jobs.queue import JobKind, JobStatus
from payweave.core.jobs.worker import Worker
from payweave.core.testing.documents import credit_memo, document_event, item_line, posted_invoice, sales_document
from payweave.plugins.psp_mock import Fault

D = Decimal
MARGIN = timedelta(hours=6)  # JobSettings.late_capture_margin_seconds default
RENEWAL = timedelta(hours=24)  # JobSettings.renewal_margin_seconds default


def worker(engine, name="w1", **kw) -> Worker:
    kw.setdefault("renewal_scan", False)
    return Worker(engine, name=name, **kw)


def reserved(engine, code, *amounts):
    lines = [item_line(10000 + i * 10000, a) for i, a in enumerate(amounts or ("100.00",))]
    doc = sales_document(payment_method_code=code, lines=lines)
    tx = engine.handle_event(document_event("released", doc)).transaction
    return doc, engine.reserve("CRONUS", tx.id)


def kinds(engine, tx_id, status=JobStatus.PENDING):
    return sorted(j.kind for j in engine.jobs.list(transaction_id=tx_id, status=status))


# ------------------------------------------------------------------------------ late capture
def test_late_capture_fires_before_expiry_and_not_twice(engine, method, mock_ledger, time_machine):
    code = method("full", late_capture=True)
    _, tx = reserved(engine, code)
    expires = tx.expires_at
    (late,) = engine.jobs.list(kind=JobKind.LATE_CAPTURE)
    assert late.due_at == expires - MARGIN
    w = worker(engine)
    time_machine.advance(late.due_at - time_machine.clock.now() - timedelta(seconds=1))
    assert w.run_once() == 0
    assert mock_ledger().count("capture") == 0
    time_machine.advance(timedelta(seconds=2))
    assert w.run_once() == 1
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.CAPTURED and view.amounts.captured == D("100.00")
    capture = next(h for h in view.history if h.action == "capture")
    assert capture.trigger == "late_capture" and capture.at < expires
    assert mock_ledger().payment(tx.psp_reference).captured == D("100.00")
    # a duplicate late-capture job (or the same one run again) captures nothing more
    with engine.store.transaction() as s:
        engine.jobs.enqueue(s, company_id="CRONUS", kind=JobKind.LATE_CAPTURE,
                            payload={"transaction_id": tx.id, "expires_at": expires.isoformat()}, transaction_id=tx.id)
    time_machine.advance(timedelta(days=8))
    w.run_once()
    assert mock_ledger().count("capture") == 1
    assert all(j.status is JobStatus.DONE for j in engine.jobs.list(transaction_id=tx.id))


def test_late_capture_takes_what_the_document_still_needs(engine, method, mock_ledger, time_machine):
    code = method("full", late_capture=True)
    _, tx = reserved(engine, code, "60.00", "40.00")
    engine.capture("CRONUS", tx.id, "60.00")
    time_machine.advance(tx.expires_at - MARGIN - time_machine.clock.now())
    worker(engine).run_once()
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.CAPTURED and view.amounts.captured == D("100.00")
    assert mock_ledger().count("capture") == 2


def test_late_capture_after_a_full_capture_does_nothing(engine, method, mock_ledger, time_machine):
    code = method("full", late_capture=True)
    _, tx = reserved(engine, code)
    engine.capture("CRONUS", tx.id)
    time_machine.advance(timedelta(days=8))
    worker(engine).run_once()
    assert mock_ledger().count("capture") == 1
    (late,) = engine.jobs.list(kind=JobKind.LATE_CAPTURE)
    assert late.status is JobStatus.DONE and late.result == {"skipped": "nothing left to capture"}


# ------------------------------------------------------------------------------ renewal and expiry
def test_reservation_renewal_reserves_anew_and_the_old_one_is_released(engine, method, mock_ledger, time_machine):
    code = method("full", allow_reservation_renewal=True, late_capture=True)
    _, tx = reserved(engine, code)
    old_ref, old_expiry = tx.psp_reference, tx.expires_at
    assert kinds(engine, tx.id) == ["expire_reservation", "late_capture", "renew_reservation"]
    time_machine.advance(old_expiry - RENEWAL - time_machine.clock.now() + timedelta(seconds=1))
    assert worker(engine).run_once() == 1
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.RESERVED and view.psp_reference != old_ref
    assert view.expires_at == time_machine.clock.now() + timedelta(days=7)
    renew = next(h for h in view.history if h.action == "renew")
    assert old_ref in renew.message and "voided" in renew.message
    ledger = mock_ledger()
    assert ledger.payment(old_ref).renewed_by == view.psp_reference and ledger.payment(old_ref).remaining == 0
    assert ledger.payment(view.psp_reference).remaining == D("100.00")
    # the jobs of the old reservation were superseded; new ones follow the new expiry
    cancelled = engine.jobs.list(transaction_id=tx.id, status=JobStatus.CANCELLED)
    assert sorted(j.kind for j in cancelled) == ["expire_reservation", "late_capture"]
    pending = engine.jobs.list(transaction_id=tx.id, status=JobStatus.PENDING)
    assert {j.payload["expires_at"] for j in pending} == {view.expires_at.isoformat()}
    time_machine.advance(old_expiry - time_machine.clock.now() + timedelta(hours=1))
    worker(engine).run_once()
    assert engine.capture("CRONUS", tx.id).amounts.captured == D("100.00")
    assert ledger.payment(view.psp_reference).captured == D("100.00")


def test_renewal_scan_finds_reservations_close_to_expiry(engine, method, time_machine):
    code = method("full")
    _, tx = reserved(engine, code)
    engine.save_payment_method(PaymentMethodSetup(company_id="CRONUS", code=code, psp="psp_mock", psp_account="full",
                                                  allow_reservation_renewal=True))
    assert schedule_renewals(engine) == 0  # not close to expiry yet
    time_machine.advance(tx.expires_at - RENEWAL - time_machine.clock.now() + timedelta(minutes=1))
    w = worker(engine, renewal_scan=True)
    w.run_once()  # the scan schedules the renewal ...
    w.run_once()  # ... which runs
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.psp_reference != tx.psp_reference and view.status is TxStatus.RESERVED
    assert engine.jobs.list(kind=JobKind.RENEWAL_SCAN, status=JobStatus.PENDING)  # the next scan is queued
    assert schedule_renewals(engine) == 0


def test_an_unrenewed_reservation_expires(engine, method, mock_ledger, time_machine):
    code = method("full")
    _, tx = reserved(engine, code)
    time_machine.advance(tx.expires_at - time_machine.clock.now() + timedelta(seconds=1))
    worker(engine).run_once()
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.status is TxStatus.EXPIRED and view.amounts.expired == D("100.00") and view.amounts.capturable == 0
    assert mock_ledger().payment(tx.psp_reference).remaining == D("100.00")  # the mock notices lazily...
    mock_ledger().expire_due()
    assert mock_ledger().payment(tx.psp_reference).lapsed == D("100.00")  # ...and agrees


# ------------------------------------------------------------------------------ job-queue capture and refund
def test_capture_and_refund_via_job_queue(engine, method, mock_ledger):
    code = method("full", capture_timing="job_queue", refund_timing="job_queue")
    doc, tx = reserved(engine, code, "70.00", "30.00")
    first = posted_invoice(doc, lines=[doc.lines[0]])
    engine.handle_event(document_event("posted", first, posted_document_id=first.document_id))
    second = posted_invoice(doc, lines=[doc.lines[1]])
    engine.handle_event(document_event("posted", second, posted_document_id=second.document_id))
    assert mock_ledger().count("capture") == 0
    w = worker(engine)
    assert w.run_once() == 2
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.captured == D("100.00") and view.status is TxStatus.CAPTURED
    # the first job captures everything invoiced by the time it runs; the second finds it covered
    assert mock_ledger().count("capture") == 1 and mock_ledger().payment(tx.psp_reference).captured == D("100.00")
    assert [j.status for j in engine.jobs.list(kind=JobKind.CAPTURE)] == [JobStatus.DONE, JobStatus.DONE]
    memo = credit_memo(first.document_id, lines=[item_line(10000, "20.00")], payment_method_code=code)
    engine.handle_event(document_event("posted", memo))
    assert mock_ledger().count("refund") == 0
    w.run_once()
    assert engine.get_transaction("CRONUS", tx.id).amounts.refunded == D("20.00")
    engine.refund_document("CRONUS", memo.document_type, memo.document_id)  # a person clicks as well
    assert mock_ledger().count("refund") == 1


def test_psp_outage_backs_the_job_off_and_it_captures_once_later(engine, method, mock_ledger, time_machine):
    code = method("full", capture_timing="job_queue")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    mock_ledger().inject(Fault.TIMEOUT_AFTER, operation="capture")
    w = worker(engine)
    w.run_once()
    (job,) = engine.jobs.list(kind=JobKind.CAPTURE)
    assert job.status is JobStatus.PENDING and job.attempts == 1 and job.last_error_code == "operation_outcome_unknown"
    assert job.due_at > time_machine.clock.now()
    assert mock_ledger().count("capture") == 1
    time_machine.advance(timedelta(minutes=5))
    w.run_once()
    assert engine.get_transaction("CRONUS", tx.id).status is TxStatus.CAPTURED
    assert engine.jobs.get(job.id).status is JobStatus.DONE
    assert mock_ledger().count("capture") == 1


def test_a_capture_job_that_cannot_succeed_is_parked_with_its_error(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved(engine, code)
    with engine.store.transaction() as s:
        job_id = engine.jobs.enqueue(s, company_id="CRONUS", kind=JobKind.CAPTURE,
                                     payload={"transaction_id": tx.id, "amount": "150.00"}, transaction_id=tx.id).id
    worker(engine).run_once()
    job = engine.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert job.last_error_code == "amount_not_available" and "150.00 EUR" in job.last_error
    assert mock_ledger().count("capture") == 0


# ------------------------------------------------------------------------------ restarts
def test_restart_with_jobs_pending_loses_nothing(engine, method, mock_ledger, time_machine):
    code = method("full", capture_timing="job_queue")
    txs = []
    for _ in range(5):
        doc, tx = reserved(engine, code)
        invoice = posted_invoice(doc)
        engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
        txs.append(tx)
    # a worker claims the batch and dies without finishing anything
    claimed = engine.jobs.claim("dying-worker", limit=3)
    assert len(claimed) == 3
    restarted = PaymentEngine(engine.store, engine.plugins, clock=engine.clock, settings=engine.settings)
    w = worker(restarted, "after-restart")
    assert w.run_once() == 2  # the three leased jobs wait for their lease to expire
    time_machine.advance(timedelta(seconds=restarted.settings.jobs.lease_seconds + 1))
    assert w.run_once() == 3
    assert all(restarted.get_transaction("CRONUS", t.id).status is TxStatus.CAPTURED for t in txs)
    assert mock_ledger().count("capture") == 5


def test_worker_dying_after_the_psp_call_is_finished_by_the_next(engine, method, mock_ledger, time_machine, monkeypatch):
    code = method("full", capture_timing="job_queue")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    with monkeypatch.context() as m:
        m.setattr(PaymentEngine, "_apply", lambda self, op_id, result: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            worker(engine, "doomed", recover_on_start=False).run_once()
    assert mock_ledger().count("capture") == 1
    (job,) = engine.jobs.list(kind=JobKind.CAPTURE)
    assert job.status is JobStatus.RUNNING and job.lease_owner == "doomed"
    restarted = PaymentEngine(engine.store, engine.plugins, clock=engine.clock, settings=engine.settings)
    time_machine.advance(timedelta(seconds=61))
    worker(restarted, "next", recover_on_start=False).run_once()
    assert restarted.get_transaction("CRONUS", tx.id).status is TxStatus.CAPTURED
    assert restarted.jobs.get(job.id).status is JobStatus.DONE
    assert mock_ledger().count("capture") == 1


def test_background_worker_thread_runs_due_jobs(engine, method, mock_ledger):
    import time

    from payweave.core.jobs.worker import BackgroundWorker

    code = method("full", capture_timing="job_queue")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    with BackgroundWorker(engine, name="bg", poll_interval=0.05, renewal_scan=False):
        engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
        deadline = time.monotonic() + 10
        while engine.get_transaction("CRONUS", tx.id).status is not TxStatus.CAPTURED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert mock_ledger().count("capture") == 1


# ------------------------------------------------------------------------------ postings that capture
def test_a_crash_after_posting_before_the_capture_is_caught_by_the_outbox_job(engine, method, mock_ledger, time_machine,
                                                                              monkeypatch):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    event = document_event("posted", invoice, posted_document_id=invoice.document_id)
    with monkeypatch.context() as m:
        m.setattr(PaymentEngine, "capture", lambda *a, **k: (_ for _ in ()).throw(SystemExit("power cut")))
        with pytest.raises(SystemExit):
            engine.handle_event(event)
    assert mock_ledger().count("capture") == 0
    (safety,) = engine.jobs.list(kind=JobKind.CAPTURE)
    assert safety.status is JobStatus.PENDING and safety.payload["mode"] == "invoiced"
    restarted = PaymentEngine(engine.store, engine.plugins, clock=engine.clock, settings=engine.settings)
    w = worker(restarted, "after-crash")
    assert w.run_once() == 0  # not due yet: the synchronous capture had five minutes
    time_machine.advance(timedelta(minutes=5))
    assert w.run_once() == 1
    assert restarted.get_transaction("CRONUS", tx.id).status is TxStatus.CAPTURED
    assert mock_ledger().count("capture") == 1
    # BC delivers the posting again: nothing more is captured
    assert restarted.handle_event(event).transaction.amounts.captured == D("100.00")
    assert mock_ledger().count("capture") == 1


def test_the_outbox_job_finds_nothing_to_do_after_a_normal_posting(engine, method, mock_ledger, time_machine):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    # the in-line capture succeeded, so its outbox job is settled at once: no pending capture is
    # shown for a captured payment
    (safety,) = engine.jobs.list(kind=JobKind.CAPTURE)
    assert safety.status is JobStatus.DONE and safety.result == {"outcome": "the capture on posting succeeded in-line"}
    time_machine.advance(timedelta(minutes=6))
    worker(engine).run_once()
    assert mock_ledger().count("capture") == 1


def test_a_refused_posting_capture_leaves_no_trace_and_a_later_posting_captures_once(engine, method, mock_ledger,
                                                                                     time_machine):
    code = method("full", capture_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    mock_ledger().inject(Fault.DECLINE, operation="capture")
    from payweave.hooks.errors import PaymentDeclined

    with pytest.raises(PaymentDeclined):
        engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.invoiced == 0 and view.history[-1].action == "posting_refused"
    assert [j.status for j in engine.jobs.list(kind=JobKind.CAPTURE)] == [JobStatus.CANCELLED]
    again = posted_invoice(doc)  # BC posts again (a new posted invoice)
    result = engine.handle_event(document_event("posted", again, posted_document_id=again.document_id))
    assert result.transaction.status is TxStatus.CAPTURED and result.transaction.amounts.invoiced == D("100.00")
    time_machine.advance(timedelta(minutes=10))
    worker(engine).run_once()
    assert mock_ledger().count("capture") == 1


def test_a_posting_the_psp_cannot_capture_is_refused_before_anything_is_recorded(engine, method, mock_ledger):
    from payweave.hooks.errors import NotSupported

    code = method("no_partial_capture", capture_timing="on_posting")
    doc, tx = reserved(engine, code, "60.00", "40.00")
    partial = posted_invoice(doc, lines=[doc.lines[0]])
    with pytest.raises(NotSupported) as err:
        engine.handle_event(document_event("posted", partial, posted_document_id=partial.document_id))
    assert "partial capture" in err.value.message
    view = engine.get_transaction("CRONUS", tx.id)
    assert view.amounts.invoiced == 0 and engine.jobs.list(kind=JobKind.CAPTURE) == []
    assert [r for r, _ in mock_ledger("no_partial_capture").requests] == ["reserve"]


def test_a_crash_before_the_refund_of_a_posted_credit_memo_is_caught_by_the_outbox_job(
    engine, method, mock_ledger, time_machine, monkeypatch
):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "35.00")], payment_method_code=code)
    with monkeypatch.context() as m:
        m.setattr(PaymentEngine, "_pay_back_document", lambda *a, **k: (_ for _ in ()).throw(SystemExit("power cut")))
        with pytest.raises(SystemExit):
            engine.handle_event(document_event("posted", memo))
    assert mock_ledger().count("refund") == 0
    time_machine.advance(timedelta(minutes=5))
    worker(engine).run_once()
    assert engine.get_transaction("CRONUS", tx.id).amounts.refunded == D("35.00")
    engine.refund_document("CRONUS", memo.document_type, memo.document_id)
    assert mock_ledger().count("refund") == 1


def test_a_refund_refused_at_posting_forgets_the_credit_memo(engine, method, mock_ledger, time_machine):
    from payweave.core.errors import DocumentNotFound
    from payweave.hooks.errors import PaymentDeclined

    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "35.00")], payment_method_code=code)
    mock_ledger().inject(Fault.DECLINE, operation="refund")
    with pytest.raises(PaymentDeclined):
        engine.handle_event(document_event("posted", memo))
    assert [j.status for j in engine.jobs.list(kind=JobKind.REFUND)] == [JobStatus.CANCELLED]
    with pytest.raises(DocumentNotFound):
        engine.refund_document("CRONUS", memo.document_type, memo.document_id)
    time_machine.advance(timedelta(minutes=10))
    worker(engine).run_once()
    assert mock_ledger().count("refund") == 0
    assert engine.get_transaction("CRONUS", tx.id).history[-1].action == "posting_refused"


def test_a_credit_memo_refused_once_can_be_posted_again(engine, method, mock_ledger):
    from payweave.hooks.errors import PaymentDeclined

    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    doc, tx = reserved(engine, code)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "35.00")], payment_method_code=code)
    mock_ledger().inject(Fault.DECLINE, operation="refund")
    with pytest.raises(PaymentDeclined):
        engine.handle_event(document_event("posted", memo))
    result = engine.handle_event(document_event("posted", memo))  # posted again in BC: a new event
    assert result.transaction.amounts.refunded == D("35.00")
    engine.refund_document("CRONUS", memo.document_type, memo.document_id)
    assert mock_ledger().count("refund") == 1
    ops = [(o.kind, o.status) for o in result.transaction.operations if o.kind == "refund"]
    assert ops == [("refund", "failed"), ("refund", "succeeded")]

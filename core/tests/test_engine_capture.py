"""Capture side of the state machine, driven by document events and manual operations, with
psp_mock configured as several PSPs. Every PSP-facing assertion is checked against psp_mock's
own ledger."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.engine import TxStatus
from payweave.core.errors import (
    AmountNotAvailable,
    DocumentNotOurs,
    IllegalTransition,
    ReleaseRequired,
    TransactionNotFound,
    UnsupportedDocumentFeature,
)
from payweave.core.jobs.queue import JobKind, JobStatus
from payweave.core.testing.documents import (
    changed,
    document_event,
    item_line,
    posted_invoice,
    sales_document,
)
from payweave.hooks.errors import NotSupported, PaymentDeclined
from payweave.hooks.models import DocumentType

D = Decimal


def order(code: str, *amounts: str, **kw):
    lines = [item_line(10000 + i * 10000, a) for i, a in enumerate(amounts or ("100.00",))]
    return sales_document(payment_method_code=code, lines=lines, **kw)


def release_and_reserve(engine, doc, token=None):
    result = engine.handle_event(document_event("released", doc))
    assert result.transaction.status is TxStatus.PREPARED
    return engine.reserve(doc.company_id, result.transaction.id, payment_method_token=token)


def post(engine, doc, **kw):
    invoice = posted_invoice(doc, **kw)
    return invoice, engine.handle_event(
        document_event("posted", invoice, posted_document_id=invoice.document_id, posted_document_number=invoice.number)
    )


@pytest.mark.parametrize("profile", ["full", "no_partial_capture", "no_void", "no_cart_update_after_reservation", "minimal"])
def test_order_reserved_then_captured_on_posting(engine, method, mock_ledger, profile):
    code = method(profile, capture_timing="on_posting")
    doc = order(code, "60.00", "40.00")
    tx = release_and_reserve(engine, doc)
    assert tx.status is TxStatus.RESERVED
    assert tx.amounts.authorized == D("100.00") and tx.amounts.capturable == D("100.00")
    assert tx.expires_at is not None
    _, result = post(engine, doc)
    tx = result.transaction
    assert tx.status is TxStatus.CAPTURED
    assert tx.amounts.captured == D("100.00") and tx.amounts.capturable == 0
    ledger = mock_ledger(profile)
    assert ledger.count("capture", tx.psp_reference) == 1
    assert ledger.payment(tx.psp_reference).captured == D("100.00")


def test_auto_capture_starts_the_transaction_captured(engine, method, mock_ledger):
    code = method("auto_capture", auto_capture=True)
    doc = order(code, "25.00")
    tx = release_and_reserve(engine, doc)
    assert tx.status is TxStatus.CAPTURED
    assert tx.amounts.captured == D("25.00") and tx.amounts.capturable == 0
    assert tx.auto_capture and tx.expires_at is None
    _, result = post(engine, doc)
    assert [a.action for a in result.actions] == ["already_captured"]
    assert mock_ledger("auto_capture").count("capture") == 1


def test_capture_on_release(engine, method, mock_ledger):
    code = method("full", capture_timing="on_release")
    doc = order(code, "30.00")
    first = engine.handle_event(document_event("released", doc))
    assert [a.action for a in first.actions] == ["prepared", "capture_waiting"]
    engine.reserve("CRONUS", first.transaction.id)
    reopened = engine.handle_event(document_event("reopened", doc))
    assert reopened.transaction is not None
    again = engine.handle_event(document_event("released", doc))
    assert "captured" in [a.action for a in again.actions]
    assert again.transaction.status is TxStatus.CAPTURED
    _, posted = post(engine, doc)
    assert [a.action for a in posted.actions] == ["already_captured"]
    assert mock_ledger().count("capture") == 1


def test_manual_capture_timing_waits_for_a_person(engine, method, mock_ledger):
    code = method("full", capture_timing="manual")
    doc = order(code, "80.00")
    tx = release_and_reserve(engine, doc)
    _, posted = post(engine, doc)
    assert [a.action for a in posted.actions] == ["awaiting_manual_capture"]
    assert posted.transaction.status is TxStatus.RESERVED
    tx = engine.capture("CRONUS", tx.id, actor="user:anna")
    assert tx.status is TxStatus.CAPTURED
    assert tx.operations[-1].actor == "user:anna"
    assert mock_ledger().count("capture") == 1


def test_job_queue_timing_enqueues_the_capture_in_the_same_transaction(engine, method):
    code = method("full", capture_timing="job_queue")
    doc = order(code, "80.00")
    tx = release_and_reserve(engine, doc)
    _, posted = post(engine, doc)
    assert [a.action for a in posted.actions] == ["capture_scheduled"]
    jobs = engine.jobs.list(company_id="CRONUS", kind=JobKind.CAPTURE)
    assert len(jobs) == 1 and jobs[0].status is JobStatus.PENDING
    assert jobs[0].payload["transaction_id"] == tx.id and jobs[0].payload["amount"] == "80.00"
    assert engine.get_transaction("CRONUS", tx.id).status is TxStatus.RESERVED


def test_direct_sales_invoice_captures_without_release(engine, method):
    code = method("full", capture_timing="on_posting")
    invoice = sales_document(DocumentType.SALES_INVOICE, payment_method_code=code, lines=[item_line(10000, "12.50")])
    tx = engine.authorize(invoice)
    assert tx.status is TxStatus.RESERVED
    result = engine.handle_event(document_event("posted", invoice, posted_document_id="posted-1", posted_document_number="PSI-1"))
    assert result.transaction.status is TxStatus.CAPTURED


def test_order_must_be_released_before_posting(engine, method):
    code = method("full", capture_timing="on_posting")
    doc = order(code)
    engine.authorize(doc)  # prepared and reserved through the API, never released
    with pytest.raises(ReleaseRequired) as err:
        post(engine, doc)
    assert "never released" in err.value.message


def test_changed_released_order_must_be_released_again(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc = order(code, "100.00")
    tx = release_and_reserve(engine, doc)
    smaller = changed(doc, lines=[item_line(10000, "90.00")])
    engine.handle_event(document_event("reopened", doc))
    result = engine.handle_event(document_event("changed", smaller))
    assert [a.action for a in result.actions] == ["release_required"]
    with pytest.raises(ReleaseRequired) as err:
        post(engine, smaller)
    assert "changed after it was released" in err.value.message and doc.number in err.value.message
    assert mock_ledger().count("capture") == 0
    engine.handle_event(document_event("released", smaller))
    _, posted = post(engine, smaller)
    assert posted.transaction.amounts.captured == D("90.00")
    # a second capture would be needed for more; 10.00 stays reserved on a multi-capture PSP
    assert posted.transaction.status is TxStatus.PARTLY_CAPTURED
    assert mock_ledger().payment(tx.psp_reference).captured == D("90.00")


def test_posting_the_order_itself_with_changes_unseen_is_refused(engine, method):
    code = method("full", capture_timing="on_posting")
    doc = order(code, "100.00")
    release_and_reserve(engine, doc)
    silently_changed = changed(doc, lines=[item_line(10000, "120.00")])
    with pytest.raises(ReleaseRequired):
        engine.handle_event(document_event("posted", silently_changed))


def test_posting_without_an_authorized_payment_is_refused(engine, method):
    code = method("full", capture_timing="on_posting")
    doc = order(code)
    engine.handle_event(document_event("released", doc))
    with pytest.raises(IllegalTransition) as err:
        post(engine, doc)
    assert "not authorized yet" in err.value.message


def test_capturing_more_than_reserved_minus_captured_is_refused(engine, method, mock_ledger):
    code = method("full")
    tx = release_and_reserve(engine, order(code, "100.00"))
    engine.capture("CRONUS", tx.id, "30.00")
    with pytest.raises(AmountNotAvailable) as err:
        engine.capture("CRONUS", tx.id, "70.01")
    assert "70.01 EUR" in err.value.message and "70.00 EUR" in err.value.message
    tx = engine.capture("CRONUS", tx.id, "70.00")
    assert tx.status is TxStatus.CAPTURED
    assert mock_ledger().count("capture", tx.psp_reference) == 2
    with pytest.raises(IllegalTransition):
        engine.capture("CRONUS", tx.id, "0.01")
    assert tx.history[-1].action == "capture"
    refused = engine.get_transaction("CRONUS", tx.id).history[-1]
    assert refused.action == "capture_refused" and refused.outcome == "refused"


def test_partial_capture_is_refused_where_the_psp_does_not_declare_it(engine, method, mock_ledger):
    code = method("no_partial_capture")
    tx = release_and_reserve(engine, order(code, "100.00"))
    with pytest.raises(NotSupported) as err:
        engine.capture("CRONUS", tx.id, "40.00")
    assert "partial capture" in err.value.message
    assert mock_ledger("no_partial_capture").requests == [("reserve", tx.operations[0].idempotency_key)]


def test_single_capture_psp_releases_the_rest_of_a_partial_capture(engine, method, mock_ledger):
    code = method("single_capture")  # partial capture, but one capture per reservation
    tx = release_and_reserve(engine, order(code, "100.00"))
    caps = engine.capabilities("psp_mock", "single_capture")
    assert caps.partial_capture and not caps.multiple_captures
    tx = engine.capture("CRONUS", tx.id, "60.00")
    assert tx.amounts.captured == D("60.00") and tx.amounts.voided == D("40.00")
    assert tx.status is TxStatus.CAPTURED
    assert tx.operations[-1].kind == "capture"
    payment = mock_ledger("single_capture").payment(tx.psp_reference)
    assert (payment.captured, payment.released) == (D("60.00"), D("40.00"))
    with pytest.raises(IllegalTransition):
        engine.capture("CRONUS", tx.id, "1.00")


def test_multiple_partial_captures_on_a_multicapture_psp(engine, method, mock_ledger):
    code = method("full")
    tx = release_and_reserve(engine, order(code, "100.00"))
    for amount in ("10.00", "20.00", "30.00"):
        tx = engine.capture("CRONUS", tx.id, amount)
    assert tx.status is TxStatus.PARTLY_CAPTURED
    assert tx.amounts.captured == D("60.00") and tx.amounts.capturable == D("40.00")
    assert mock_ledger().payment(tx.psp_reference).captured == D("60.00")


def test_capture_before_authorization_is_illegal(engine, method):
    code = method("full")
    result = engine.handle_event(document_event("released", order(code)))
    with pytest.raises(IllegalTransition) as err:
        engine.capture("CRONUS", result.transaction.id)
    assert "not authorized" in err.value.message


def test_amount_precision_is_checked(engine, method):
    code = method("full")
    tx = release_and_reserve(engine, order(code))
    with pytest.raises(Exception) as err:
        engine.capture("CRONUS", tx.id, "1.001")
    assert getattr(err.value, "code", None) == "invalid_amount"
    with pytest.raises(Exception) as err:
        engine.capture("CRONUS", tx.id, 1.5)
    assert getattr(err.value, "code", None) == "invalid_amount"


def test_declined_reservation_fails_the_transaction_and_a_new_one_may_follow(engine, method, mock_ledger):
    code = method("full")
    doc = order(code)
    result = engine.handle_event(document_event("released", doc))
    with pytest.raises(PaymentDeclined) as err:
        engine.reserve("CRONUS", result.transaction.id, payment_method_token="decline_insufficient_funds")
    assert err.value.decline_code == "insufficient_funds"
    failed = engine.get_transaction("CRONUS", result.transaction.id)
    assert failed.status is TxStatus.FAILED
    assert failed.operations[0].status == "failed" and failed.operations[0].error_code == "payment_declined"
    tx = engine.authorize(doc)
    assert tx.id != failed.id and tx.status is TxStatus.RESERVED


def test_a_repeated_request_id_captures_once(engine, method, mock_ledger):
    code = method("full")
    tx = release_and_reserve(engine, order(code))
    first = engine.capture("CRONUS", tx.id, "10.00", request_id="api-key-1")
    again = engine.capture("CRONUS", tx.id, "10.00", request_id="api-key-1")
    assert first.amounts.captured == again.amounts.captured == D("10.00")
    assert mock_ledger().count("capture") == 1
    with pytest.raises(IllegalTransition):
        engine.void("CRONUS", tx.id, request_id="api-key-1")


def test_documents_that_are_not_ours_are_refused(engine, method):
    method("full")
    with pytest.raises(DocumentNotOurs) as err:
        engine.handle_event(document_event("released", order("CASH")))
    assert "CASH" in err.value.message and "not a payweave payment method" in err.value.message
    with pytest.raises(DocumentNotOurs):
        engine.handle_event(document_event("released", order(None)))


def test_unsupported_feature_refuses_the_event(engine, method):
    code = method("full")
    with pytest.raises(UnsupportedDocumentFeature) as err:
        engine.handle_event(document_event("released", order(code, prepayment_percent=D("20"))))
    assert "Prepayment %" in err.value.message


def test_transactions_are_scoped_by_company(engine, method):
    code = method("full")
    tx = release_and_reserve(engine, order(code))
    with pytest.raises(TransactionNotFound):
        engine.capture("OTHER", tx.id)
    with pytest.raises(TransactionNotFound):
        engine.get_transaction("OTHER", tx.id)
    assert engine.list_transactions("OTHER") == []
    assert [t.id for t in engine.list_transactions("CRONUS")] == [tx.id]

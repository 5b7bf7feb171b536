"""Voids (manual, partial cancellation, deletion) and refunds / credits (manual, on posting, via
job queue), with the refund-vs-credit selection of DESIGN.md section 4."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.engine import AdvancedImportRequest, TxStatus
from payweave.core.errors import (
    AmountNotAvailable,
    DocumentNotFound,
    IllegalTransition,
    OptionDisabled,
    OriginalPaymentNotFound,
)
from payweave.core.jobs.queue import JobKind
from payweave.core.testing.documents import (
    changed,
    credit_memo,
    document_event,
    gl_line,
    item_line,
    posted_invoice,
    sales_document,
)
from payweave.hooks.errors import NotSupported
from payweave.hooks.models import DocumentType, LineKind

D = Decimal


def reserved_order(engine, code, *amounts):
    lines = [item_line(10000 + i * 10000, a) for i, a in enumerate(amounts or ("100.00",))]
    doc = sales_document(payment_method_code=code, lines=lines)
    tx = engine.handle_event(document_event("released", doc)).transaction
    return doc, engine.reserve("CRONUS", tx.id)


def captured_order(engine, code, *amounts):
    doc, tx = reserved_order(engine, code, *amounts)
    invoice = posted_invoice(doc)
    result = engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id,
                                                posted_document_number=invoice.number))
    assert result.transaction.status is TxStatus.CAPTURED
    return doc, invoice, result.transaction


# ------------------------------------------------------------------------------------------ voids
def test_partial_cancellation_voids_the_excess(engine, method, mock_ledger):
    code = method("full", auto_void=True, capture_timing="on_posting")
    doc, tx = reserved_order(engine, code, "60.00", "40.00")
    smaller = changed(doc, lines=[doc.lines[0]])
    result = engine.handle_event(document_event("partly_cancelled", smaller))
    assert [(a.action, a.amount) for a in result.actions] == [("voided", D("40.00"))]
    tx = result.transaction
    assert tx.status is TxStatus.PARTLY_VOIDED
    assert (tx.amounts.voided, tx.amounts.capturable) == (D("40.00"), D("60.00"))
    payment = mock_ledger().payment(tx.psp_reference)
    assert payment.released == D("40.00") and payment.remaining == D("60.00")
    # the cancellation is the released content now: posting the remaining order captures 60
    invoice = posted_invoice(smaller)
    posted = engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    assert posted.transaction.status is TxStatus.CAPTURED and posted.transaction.amounts.captured == D("60.00")


def test_partial_cancellation_voids_everything_when_the_psp_cannot_void_partially(engine, method, mock_ledger):
    code = method("no_partial_refund", auto_void=True)  # void=full
    doc, tx = reserved_order(engine, code, "60.00", "40.00")
    result = engine.handle_event(document_event("partly_cancelled", changed(doc, lines=[doc.lines[0]])))
    assert [a.action for a in result.actions] == ["voided_all"]
    assert "cannot void partially" in result.actions[0].message
    assert result.transaction.status is TxStatus.VOIDED
    assert mock_ledger("no_partial_refund").payment(tx.psp_reference).released == D("100.00")


def test_partial_cancellation_after_a_partial_capture(engine, method, mock_ledger):
    code = method("full", auto_void=True)
    doc, tx = reserved_order(engine, code, "50.00", "30.00", "20.00")
    engine.capture("CRONUS", tx.id, "50.00")
    # line 3 (20.00) cancelled: remaining order value 80, captured 50 -> 30 still needed, 50 reserved -> void 20
    result = engine.handle_event(document_event("partly_cancelled", changed(doc, lines=list(doc.lines[:2]))))
    assert [(a.action, a.amount) for a in result.actions] == [("voided", D("20.00"))]
    assert result.transaction.amounts.capturable == D("30.00")


def test_partial_cancellation_without_the_option_keeps_the_reservation(engine, method, mock_ledger):
    code = method("full")
    doc, tx = reserved_order(engine, code, "60.00", "40.00")
    result = engine.handle_event(document_event("partly_cancelled", changed(doc, lines=[doc.lines[0]])))
    assert [a.action for a in result.actions] == ["excess_stays_reserved"]
    assert mock_ledger().count("void") == 0
    assert result.transaction.history[-1].action == "cancellation_recorded"


def test_deletion_voids_everything_still_reserved(engine, method, mock_ledger):
    code = method("no_cart_update_after_reservation", auto_void=True)
    doc, tx = reserved_order(engine, code, "70.00")
    result = engine.handle_event(document_event("deleted", doc))
    assert result.transaction.status is TxStatus.VOIDED
    assert result.transaction.amounts.voided == D("70.00")
    assert mock_ledger("no_cart_update_after_reservation").payment(tx.psp_reference).released == D("70.00")


def test_deletion_after_partial_capture_voids_the_rest(engine, method, mock_ledger):
    code = method("full", auto_void=True)
    doc, tx = reserved_order(engine, code, "70.00")
    engine.capture("CRONUS", tx.id, "20.00")
    result = engine.handle_event(document_event("deleted", doc))
    assert result.transaction.status is TxStatus.CAPTURED
    assert (result.transaction.amounts.captured, result.transaction.amounts.voided) == (D("20.00"), D("50.00"))


def test_deletion_of_an_unpaid_order_cancels_without_the_psp(engine, method, mock_ledger):
    code = method("full", auto_void=True)
    doc = sales_document(payment_method_code=code)
    engine.handle_event(document_event("released", doc))
    result = engine.handle_event(document_event("deleted", doc))
    assert result.transaction.status is TxStatus.VOIDED
    assert mock_ledger().requests == []
    assert engine.transaction_for_document("CRONUS", DocumentType.SALES_ORDER, doc.document_id).status is TxStatus.VOIDED


def test_void_where_the_psp_has_none_is_refused_before_any_call(engine, method, mock_ledger):
    code = method("no_void")
    _, tx = reserved_order(engine, code)
    with pytest.raises(NotSupported) as err:
        engine.void("CRONUS", tx.id)
    assert "voiding a reservation" in err.value.message
    assert [r[0] for r in mock_ledger("no_void").requests] == ["reserve"]


def test_partial_void_needs_the_capability(engine, method):
    code = method("no_partial_refund")
    _, tx = reserved_order(engine, code)
    with pytest.raises(NotSupported):
        engine.void("CRONUS", tx.id, "10.00")
    assert engine.void("CRONUS", tx.id).status is TxStatus.VOIDED


def test_void_more_than_reserved_and_void_after_capture(engine, method):
    code = method("full")
    _, tx = reserved_order(engine, code)
    with pytest.raises(AmountNotAvailable):
        engine.void("CRONUS", tx.id, "100.01")
    engine.capture("CRONUS", tx.id)
    with pytest.raises(IllegalTransition) as err:
        engine.void("CRONUS", tx.id)
    assert "use a refund" in err.value.message


# ------------------------------------------------------------------------------------------ refunds
def test_credit_memo_refunds_on_posting(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "30.00")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert [(a.action, a.amount) for a in result.actions] == [("refunded", D("30.00"))]
    tx = result.transaction
    assert tx.status is TxStatus.PARTLY_REFUNDED and tx.amounts.refundable == D("70.00")
    assert mock_ledger().payment(tx.psp_reference).refunded == D("30.00")
    refund_op = tx.operations[-1]
    assert refund_op.kind == "refund" and refund_op.document_number == memo.number


def test_return_order_refunds_by_invoice_number(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    ret = sales_document(DocumentType.SALES_RETURN_ORDER, payment_method_code=code, lines=[item_line(10000, "100.00")],
                         applies_to_invoice_number=invoice.number)
    result = engine.handle_event(document_event("posted", ret))
    assert result.transaction.status is TxStatus.REFUNDED
    assert mock_ledger().payment(tx.psp_reference).refunded == D("100.00")


def test_refund_more_than_captured_minus_refunded_is_refused(engine, method, mock_ledger):
    code = method("full")
    _, tx = reserved_order(engine, code)
    engine.capture("CRONUS", tx.id, "50.00")
    engine.refund("CRONUS", tx.id, "20.00")
    with pytest.raises(AmountNotAvailable) as err:
        engine.refund("CRONUS", tx.id, "30.01")
    assert "30.01 EUR" in err.value.message and "30.00 EUR" in err.value.message
    assert mock_ledger().count("refund") == 1


def test_refund_before_any_capture_is_illegal(engine, method):
    code = method("full")
    _, tx = reserved_order(engine, code)
    with pytest.raises(IllegalTransition) as err:
        engine.refund("CRONUS", tx.id, "10.00")
    assert "void the reservation instead" in err.value.message


def test_partial_refund_refused_where_the_psp_refunds_only_in_full(engine, method, mock_ledger):
    code = method("no_partial_refund", capture_timing="on_posting", refund_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "30.00")], payment_method_code=code)
    with pytest.raises(NotSupported) as err:
        engine.handle_event(document_event("posted", memo))
    assert "partial refunds" in err.value.message
    assert mock_ledger("no_partial_refund").count("refund") == 0
    full = credit_memo(invoice.document_id, lines=[item_line(10000, "100.00")], payment_method_code=code)
    assert engine.handle_event(document_event("posted", full)).transaction.status is TxStatus.REFUNDED


def test_credit_memo_against_an_unknown_invoice(engine, method):
    code = method("full", refund_timing="on_posting")
    memo = credit_memo("not-ours", lines=[item_line(10000, "10.00")], payment_method_code=code)
    with pytest.raises(OriginalPaymentNotFound) as err:
        engine.handle_event(document_event("posted", memo))
    assert "not paid through payweave" in err.value.message


def test_manual_refund_timing_waits_and_pays_back_once(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "25.00")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert [a.action for a in result.actions] == ["awaiting_manual_refund"]
    assert mock_ledger().count("refund") == 0
    first = engine.refund_document("CRONUS", memo.document_type, memo.document_id, actor="user:anna")
    again = engine.refund_document("CRONUS", memo.document_type, memo.document_id, actor="user:ben")
    assert first.amounts.refunded == again.amounts.refunded == D("25.00")
    assert mock_ledger().count("refund") == 1
    with pytest.raises(DocumentNotFound):
        engine.refund_document("CRONUS", memo.document_type, "unknown")


def test_job_queue_refund_timing_enqueues_with_the_posting(engine, method):
    code = method("full", capture_timing="on_posting", refund_timing="job_queue")
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "25.00")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert [a.action for a in result.actions] == ["refund_scheduled"]
    jobs = engine.jobs.list(company_id="CRONUS", kind=JobKind.REFUND)
    assert [j.payload["document_id"] for j in jobs] == [memo.document_id]


# ------------------------------------------------------------------------------------------ credits
def test_gl_lines_unknown_to_the_psp_make_it_a_credit(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting", credit_allowed=True)
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[gl_line(10000, "15.00", account="6620")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert result.actions[0].action == "credited"
    assert "G/L account lines the PSP never saw (6620)" in result.actions[0].message
    assert result.transaction.status is TxStatus.PARTLY_CREDITED
    assert mock_ledger().payment(tx.psp_reference).credited == D("15.00")


def test_gl_lines_the_psp_saw_stay_a_refund(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting", credit_allowed=True)
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "50.00"), gl_line(20000, "10.00", account="6610")])
    tx = engine.handle_event(document_event("released", doc)).transaction
    engine.reserve("CRONUS", tx.id)
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    memo = credit_memo(invoice.document_id, lines=[gl_line(10000, "10.00", account="6610")], payment_method_code=code)
    assert engine.handle_event(document_event("posted", memo)).actions[0].action == "refunded"
    refund_lines = mock_ledger().requests
    assert ("refund", engine.get_transaction("CRONUS", tx.id).operations[-1].idempotency_key) in refund_lines


def test_follow_up_credit_on_a_credited_payment(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting", credit_allowed=True)
    _, invoice, tx = captured_order(engine, code, "100.00")
    engine.credit("CRONUS", tx.id, "10.00", reason="goodwill")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "20.00")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert result.actions[0].action == "credited"
    assert "already credited" in result.actions[0].message
    assert mock_ledger().count("credit") == 2 and mock_ledger().count("refund") == 0


def test_credit_needs_credit_allowed(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    with pytest.raises(OptionDisabled) as err:
        engine.credit("CRONUS", tx.id, "10.00")
    assert "Credit Allowed" in err.value.message
    memo = credit_memo(invoice.document_id, lines=[gl_line(10000, "15.00", account="6620")], payment_method_code=code)
    with pytest.raises(OptionDisabled) as err:
        engine.handle_event(document_event("posted", memo))
    assert "Credit Allowed" in err.value.message and "G/L account" in err.value.message
    assert mock_ledger().count("credit") == 0


def test_advanced_import_refunds_go_out_as_credits(engine, method, mock_ledger, plugin_manager):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting", credit_allowed=True, advanced_import=True)
    from payweave.plugins.psp_mock.testing import reserve_request

    psp = plugin_manager.psp("psp_mock")
    shop = psp.reserve(engine.account("psp_mock", "full"), reserve_request("80.00"))
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "80.00")])
    tx = engine.import_payment(AdvancedImportRequest(document=doc, psp_reference=shop.psp_reference, amount=D("80.00")))
    engine.handle_event(document_event("released", doc))
    invoice = posted_invoice(doc)
    engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "80.00")], payment_method_code=code)
    result = engine.handle_event(document_event("posted", memo))
    assert result.actions[0].action == "credited" and "imported" in result.actions[0].message
    assert result.transaction.status is TxStatus.CREDITED
    payment = mock_ledger().payment(tx.psp_reference)
    assert (payment.captured, payment.credited, payment.refunded) == (D("80.00"), D("80.00"), D("0"))


def test_refund_lines_are_the_return_documents_cart(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting", refund_timing="on_posting")
    _, invoice, tx = captured_order(engine, code, "100.00")
    memo = credit_memo(invoice.document_id, lines=[item_line(10000, "30.00", tax="0")], payment_method_code=code)
    view = engine.handle_event(document_event("posted", memo)).transaction
    op = view.operations[-1]
    assert op.kind == "refund"
    from payweave.core.store import OperationRow

    with engine.store.transaction() as s:
        request = s.get(OperationRow, op.id).request
    assert [line["kind"] for line in request["lines"]] == [LineKind.ITEM.value]
    assert request["lines"][0]["gross_amount"] == "30.00"

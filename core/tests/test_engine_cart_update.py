"""Cart update: a changed released order reaches the PSP when it is released again, only at the
stages the PSP declares; posting a changed order without re-release is refused."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.engine import TxStatus
from payweave.core.errors import CartUpdateNotPossible, ReleaseRequired
from payweave.core.testing.documents import changed, document_event, item_line, posted_invoice, sales_document

D = Decimal


def reserve(engine, doc, token=None):
    tx = engine.handle_event(document_event("released", doc)).transaction
    return engine.reserve("CRONUS", tx.id, payment_method_token=token)


def rerelease(engine, old, new):
    engine.handle_event(document_event("reopened", old))
    engine.handle_event(document_event("changed", new))
    return engine.handle_event(document_event("released", new))


def post(engine, doc):
    invoice = posted_invoice(doc)
    return engine.handle_event(document_event("posted", invoice, posted_document_id=invoice.document_id))


def test_changed_cart_reaches_the_psp_while_reserved(engine, method, mock_ledger):
    code = method("full", allow_cart_update=True, capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    tx = reserve(engine, doc)
    bigger = changed(doc, lines=[item_line(10000, "100.00"), item_line(20000, "25.00")])
    result = rerelease(engine, doc, bigger)
    assert "cart_updated" in [a.action for a in result.actions]
    tx = result.transaction
    assert tx.status is TxStatus.RESERVED and tx.amounts.authorized == D("125.00") and tx.amount == D("125.00")
    payment = mock_ledger().payment(tx.psp_reference)
    assert payment.amount == D("125.00") and len(payment.cart.lines) == 2
    assert post(engine, bigger).transaction.amounts.captured == D("125.00")
    assert [op.kind for op in engine.get_transaction("CRONUS", tx.id).operations] == ["reserve", "cart_update", "capture"]


def test_release_again_without_changes_sends_nothing(engine, method, mock_ledger):
    code = method("full", allow_cart_update=True)
    doc = sales_document(payment_method_code=code)
    reserve(engine, doc)
    engine.handle_event(document_event("released", doc))
    assert [op for op, _ in mock_ledger().requests] == ["reserve"]


def test_psp_without_update_after_reservation_refuses_a_higher_total(engine, method, mock_ledger):
    code = method("no_cart_update_after_reservation", allow_cart_update=True, capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    reserve(engine, doc)
    bigger = changed(doc, lines=[item_line(10000, "130.00")])
    with pytest.raises(CartUpdateNotPossible) as err:
        rerelease(engine, doc, bigger)
    message = err.value.message
    assert "130.00 EUR" in message and "100.00 EUR" in message and "cart updates while reserved" in message
    assert [op for op, _ in mock_ledger("no_cart_update_after_reservation").requests] == ["reserve"]
    with pytest.raises(ReleaseRequired):  # the refused release did not count
        post(engine, bigger)


def test_psp_without_update_after_reservation_accepts_a_lower_total_locally(engine, method, mock_ledger):
    code = method("no_cart_update_after_reservation", allow_cart_update=True, capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    tx = reserve(engine, doc)
    smaller = changed(doc, lines=[item_line(10000, "70.00")])
    result = rerelease(engine, doc, smaller)
    assert [a.action for a in result.actions if a.action == "cart_changed"] == ["cart_changed"]
    assert "does not support cart updates while reserved" in result.actions[-1].message
    assert [op for op, _ in mock_ledger("no_cart_update_after_reservation").requests] == ["reserve"]
    posted = post(engine, smaller).transaction
    assert posted.amounts.captured == D("70.00") and posted.amounts.capturable == D("30.00")
    assert mock_ledger("no_cart_update_after_reservation").payment(tx.psp_reference).captured == D("70.00")


def test_cart_update_option_off_is_like_an_unsupported_stage(engine, method, mock_ledger):
    code = method("full", capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    reserve(engine, doc)
    with pytest.raises(CartUpdateNotPossible) as err:
        rerelease(engine, doc, changed(doc, lines=[item_line(10000, "100.01")]))
    assert "'Allow Cart Update' is off" in err.value.message


def test_cart_update_before_reservation_for_a_pending_payment(engine, method, mock_ledger):
    code = method("no_cart_update_after_reservation", allow_cart_update=True)
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    tx = reserve(engine, doc, token="requires_action")  # the customer still has to authorize
    assert tx.status is TxStatus.PENDING
    bigger = changed(doc, lines=[item_line(10000, "140.00")])
    result = rerelease(engine, doc, bigger)
    assert "cart_updated" in [a.action for a in result.actions]
    ledger = mock_ledger("no_cart_update_after_reservation")
    assert ledger.payment(tx.psp_reference).amount == D("140.00")
    assert ("update_cart", result.transaction.operations[-1].idempotency_key) in ledger.requests


def test_prepared_payment_changes_only_locally(engine, method, mock_ledger):
    code = method("full")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "100.00")])
    engine.handle_event(document_event("released", doc))
    bigger = changed(doc, lines=[item_line(10000, "150.00")])
    result = rerelease(engine, doc, bigger)
    assert result.transaction.status is TxStatus.PREPARED and result.transaction.amount == D("150.00")
    tx = engine.reserve("CRONUS", result.transaction.id)
    assert tx.amounts.authorized == D("150.00")
    assert mock_ledger().payment(tx.psp_reference).cart.total_gross == D("150.00")


def test_no_cart_payment_sends_the_total_only(engine, method, mock_ledger):
    code = method("full", without_cart=True, capture_timing="on_posting")
    doc = sales_document(payment_method_code=code, lines=[item_line(10000, "40.00"), item_line(20000, "2.50")])
    tx = reserve(engine, doc)
    assert tx.no_cart and tx.amounts.authorized == D("42.50")
    payment = mock_ledger().payment(tx.psp_reference)
    assert payment.cart is None and payment.amount == D("42.50")
    with pytest.raises(CartUpdateNotPossible) as err:
        rerelease(engine, doc, changed(doc, lines=[item_line(10000, "60.00")]))
    assert "without a cart" in err.value.message

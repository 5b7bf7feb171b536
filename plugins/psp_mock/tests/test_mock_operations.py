"""Honouring each capability: the ledger moves exactly the money the operation asks for, and
refuses amounts beyond what the payment allows."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.plugins import PspClient
from payweave.hooks.errors import AuthenticationFailed, InvalidRequest, PaymentDeclined, RemoteNotFound
from payweave.hooks.models import (
    Account,
    CartUpdateRequest,
    Customer,
    MandateChargeRequest,
    PaymentLinkRequest,
    PaymentStatus,
    RenewReservationRequest,
)
from payweave.hooks.money import Money
from payweave.plugins.psp_mock import MockLedger, ledger_for
from payweave.plugins.psp_mock.testing import (
    CUSTOMER,
    capture_request,
    cart_of,
    credit_request,
    key,
    money,
    refund_request,
    reserve_request,
    void_request,
)


def D(value: str) -> Decimal:
    return Decimal(value)


# ---------------------------------------------------------------- reserve and capture
def test_reserve_then_full_capture(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    res = psp.reserve(account, reserve_request("10.00"))
    assert res.status is PaymentStatus.RESERVED
    assert res.amount == money("10.00") and res.captured == money("0.00")
    assert res.expires_at is not None
    op = psp.capture(account, capture_request(res.psp_reference, "10.00"))
    assert op.amount == money("10.00") and op.released is None
    payment = ledger.payment(res.psp_reference)
    assert (payment.captured, payment.remaining, payment.status) == (D("10.00"), 0, PaymentStatus.CAPTURED)
    assert ledger.count("capture") == 1 and ledger.invariant_violations() == []


def test_several_partial_captures_then_final(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("100.00")).psp_reference
    psp.capture(account, capture_request(ref, "30.00", final=False))
    assert ledger.payment(ref).status is PaymentStatus.PARTLY_CAPTURED
    psp.capture(account, capture_request(ref, "20.00", final=False))
    last = psp.capture(account, capture_request(ref, "25.00", final=True))
    assert last.released == money("25.00")
    payment = ledger.payment(ref)
    assert (payment.captured, payment.released, payment.remaining) == (D("75.00"), D("25.00"), 0)
    assert payment.status is PaymentStatus.CAPTURED
    assert ledger.count("capture", ref) == 3
    assert ledger.invariant_violations() == []


def test_capture_more_than_reserved_is_invalid(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(InvalidRequest) as info:
        psp.capture(account, capture_request(ref, "10.01"))
    assert info.value.code == "amount_too_large"
    psp.capture(account, capture_request(ref, "6.00", final=False))
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(ref, "4.01"))
    assert ledger.payment(ref).captured == D("6.00")


def test_capture_of_unknown_or_wrong_currency_is_invalid(psp: PspClient, account: Account) -> None:
    with pytest.raises(InvalidRequest) as info:
        psp.capture(account, capture_request("mpay_nope", "1.00"))
    assert info.value.code == "no_such_payment"
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(InvalidRequest) as info:
        psp.capture(account, capture_request(ref, "1.00", "USD"))
    assert info.value.code == "currency_mismatch"


def test_zero_and_negative_amounts_are_invalid(psp: PspClient, account: Account) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    for amount in ("0.00", "-1.00"):
        with pytest.raises(InvalidRequest):
            psp.capture(account, capture_request(ref, amount))


def test_auto_capture(psp: PspClient, make_account, ) -> None:  # noqa: ANN001
    account = make_account(profile="auto_capture")
    res = psp.reserve(account, reserve_request("12.34", capture=True))
    assert res.status is PaymentStatus.CAPTURED and res.captured == money("12.34")
    assert res.operation_reference and res.operation_reference.startswith("mcap_")
    assert res.expires_at is None
    ledger = ledger_for(account)
    assert ledger.count("capture") == 1 and ledger.payment(res.psp_reference).refundable == D("12.34")


def test_no_cart_reservation(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    res = psp.reserve(account, reserve_request("7.00", cart=False))
    assert ledger.payment(res.psp_reference).cart is None


@pytest.mark.parametrize(("amount", "currency", "minor"), [("1234", "JPY", 1234), ("1.234", "KWD", 1234), ("12.34", "EUR", 1234)])
def test_currency_precision_end_to_end(psp: PspClient, account: Account, ledger: MockLedger, amount: str, currency: str, minor: int) -> None:
    res = psp.reserve(account, reserve_request(amount, currency))
    assert res.amount == Money.of(amount, currency)
    psp.capture(account, capture_request(res.psp_reference, amount, currency))
    event = ledger.last_event("payment.captured", res.psp_reference)
    assert event is not None and event["data"]["amount_minor"] == minor


# ---------------------------------------------------------------- declines and the customer
def test_decline_token(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    with pytest.raises(PaymentDeclined) as info:
        psp.reserve(account, reserve_request("10.00", payment_method_token="decline_insufficient_funds"))
    assert info.value.decline_code == "insufficient_funds"
    assert ledger.declines == 1 and ledger.count("reserve") == 0
    assert ledger.last_event("payment.failed") is not None


def test_requires_action_leaves_payment_pending(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    res = psp.reserve(account, reserve_request("10.00", payment_method_token="requires_action"))
    assert res.status is PaymentStatus.PENDING and res.expires_at is None
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(res.psp_reference, "10.00"))
    ledger.authorize_pending(res.psp_reference)
    psp.capture(account, capture_request(res.psp_reference, "10.00"))
    assert ledger.payment(res.psp_reference).status is PaymentStatus.CAPTURED


def test_invalid_api_key(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(api_key="sk_mock_invalid")
    with pytest.raises(AuthenticationFailed):
        psp.reserve(account, reserve_request("1.00"))


# ---------------------------------------------------------------- void
def test_full_void(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    op = psp.void(account, void_request(ref))
    assert op.amount == money("10.00")
    assert ledger.payment(ref).status is PaymentStatus.VOIDED
    with pytest.raises(InvalidRequest) as info:
        psp.void(account, void_request(ref))
    assert info.value.code == "nothing_to_void"
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(ref, "1.00"))


def test_partial_void_keeps_the_rest_capturable(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.void(account, void_request(ref, "3.00"))
    payment = ledger.payment(ref)
    assert (payment.remaining, payment.status) == (D("7.00"), PaymentStatus.RESERVED)
    with pytest.raises(InvalidRequest):
        psp.void(account, void_request(ref, "7.01"))
    psp.capture(account, capture_request(ref, "7.00"))
    assert ledger.payment(ref).status is PaymentStatus.CAPTURED
    assert ledger.invariant_violations() == []


def test_void_after_full_capture_is_invalid(psp: PspClient, account: Account) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    with pytest.raises(InvalidRequest):
        psp.void(account, void_request(ref))


# ---------------------------------------------------------------- refunds and credits
def test_partial_refunds_up_to_the_captured_amount(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "8.00"))  # final: 2.00 released
    psp.refund(account, refund_request(ref, "3.00"))
    assert ledger.payment(ref).status is PaymentStatus.CAPTURED
    with pytest.raises(InvalidRequest) as info:
        psp.refund(account, refund_request(ref, "5.01"))
    assert info.value.code == "amount_too_large"
    psp.refund(account, refund_request(ref, "5.00"))
    assert ledger.payment(ref).status is PaymentStatus.REFUNDED
    assert ledger.total("refund", "EUR", ref) == D("8.00")
    with pytest.raises(InvalidRequest) as info:
        psp.refund(account, refund_request(ref, "0.01"))
    assert info.value.code == "nothing_to_refund"


def test_refund_of_uncaptured_reservation_is_invalid(psp: PspClient, account: Account) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(InvalidRequest):
        psp.refund(account, refund_request(ref, "1.00"))


def test_refund_lines_must_add_up(psp: PspClient, account: Account) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    lines = cart_of("4.00").lines
    with pytest.raises(InvalidRequest) as info:
        psp.refund(account, refund_request(ref, "5.00", lines=lines))
    assert info.value.code == "lines_do_not_match_amount"
    psp.refund(account, refund_request(ref, "4.00", lines=lines))


def test_credit_linked_and_unlinked(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    psp.refund(account, refund_request(ref, "4.00"))
    psp.credit(account, credit_request(ref, "5.00"))
    with pytest.raises(InvalidRequest):
        psp.credit(account, credit_request(ref, "1.01"))  # 10 - 4 - 5 = 1 left
    unlinked = psp.credit(account, credit_request(None, "20.00", customer=CUSTOMER))
    assert unlinked.psp_reference == unlinked.operation_reference
    assert ledger.count("credit") == 2
    with pytest.raises(InvalidRequest):
        psp.credit(account, credit_request(None, "1.00"))
    assert ledger.invariant_violations() == []


# ---------------------------------------------------------------- cart updates
def test_cart_update_while_reserved(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    res = psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="while_reserved", cart=cart_of("8.00", lines=2)))
    assert res.amount == money("8.00")
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(ref, "8.01"))
    res = psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="while_reserved", cart=cart_of("15.00")))
    assert ledger.payment(ref).remaining == D("15.00")
    psp.capture(account, capture_request(ref, "15.00"))
    with pytest.raises(InvalidRequest) as info:  # captured: the cart is final
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="while_reserved", cart=cart_of("1.00")))
    assert info.value.code == "not_reserved"


def test_cart_update_before_reservation(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00", payment_method_token="requires_action")).psp_reference
    psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="before_reservation", cart=cart_of("12.00")))
    ledger.authorize_pending(ref)
    assert ledger.payment(ref).remaining == D("12.00")
    with pytest.raises(InvalidRequest) as info:
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="before_reservation", cart=cart_of("3.00")))
    assert info.value.code == "already_reserved"


# ---------------------------------------------------------------- links, mandates, renewal, lookup
def _link(psp: PspClient, account: Account, amount: str = "25.00", **kw) -> object:  # noqa: ANN003
    return psp.create_payment_link(
        account,
        PaymentLinkRequest(
            idempotency_key=key("link"), transaction_id="t", amount=money(amount), cart=cart_of(amount),
            success_url="https://shop.example/ok", error_url="https://shop.example/err",
            cancel_url="https://shop.example/cancel", **kw,
        ),
    )


def test_payment_link_completed_by_the_customer(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    link = _link(psp, account)
    assert link.url.endswith(link.link_id) and link.psp_reference
    assert psp.get_payment(account, link.psp_reference).status is PaymentStatus.PENDING
    assert ledger.complete_link(link.link_id, "cancelled") is None
    ref = ledger.complete_link(link.link_id, "paid")
    assert ref == link.psp_reference
    assert psp.get_payment(account, ref).status is PaymentStatus.RESERVED
    event = ledger.last_event("link.completed")
    assert event["data"]["link_id"] == link.link_id and event["data"]["payment"] == ref
    with pytest.raises(InvalidRequest):
        ledger.complete_link(link.link_id, "paid")


def test_payment_link_with_capture_and_expiry(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    paid = _link(psp, account, capture=True)
    ref = ledger.complete_link(paid.link_id)
    assert ledger.payment(ref).status is PaymentStatus.CAPTURED
    late = _link(psp, account)
    ledger.advance(days=2)
    assert ledger.links[late.link_id].status == "expired"
    assert ledger.last_event("link.expired")["data"]["link_id"] == late.link_id
    with pytest.raises(InvalidRequest):
        ledger.complete_link(late.link_id)


def test_payment_link_urls_are_checked(psp: PspClient, account: Account) -> None:
    with pytest.raises(InvalidRequest):
        psp.create_payment_link(account, PaymentLinkRequest(idempotency_key=key(), transaction_id="t", amount=money("1.00"), cart=cart_of("1.00"), success_url="javascript:x", error_url="https://e", cancel_url="https://c"))


def test_mandate_charges(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    mandate = ledger.create_mandate(CUSTOMER.customer_id)

    def charge(ref: str, customer: Customer = CUSTOMER) -> object:
        return psp.charge_mandate(account, MandateChargeRequest(idempotency_key=key(), transaction_id="t", mandate_reference=ref, customer=customer, amount=money("9.99")))

    res = charge(mandate)
    assert res.status is PaymentStatus.CAPTURED and res.captured == money("9.99")
    with pytest.raises(InvalidRequest) as info:
        charge(mandate, Customer(customer_id="someone-else"))
    assert info.value.code == "mandate_customer_mismatch"
    with pytest.raises(PaymentDeclined) as declined:
        charge(ledger.create_mandate(CUSTOMER.customer_id, "authentication_required"))
    assert declined.value.decline_code == "authentication_required"
    ledger.revoke_mandate(mandate)
    with pytest.raises(InvalidRequest):
        charge(mandate)


def test_renewal_reauthorizes_and_voids_the_old(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    old = psp.reserve(account, reserve_request("50.00"))
    ledger.advance(days=6)
    renewed = psp.renew_reservation(account, RenewReservationRequest(idempotency_key=key(), transaction_id="t", psp_reference=old.psp_reference, amount=money("50.00")))
    assert renewed.old_reference_action == "voided"
    new = renewed.reservation
    assert new.psp_reference != old.psp_reference and new.status is PaymentStatus.RESERVED
    assert new.expires_at > old.expires_at
    assert ledger.payment(old.psp_reference).status is PaymentStatus.VOIDED
    ledger.advance(days=2)  # the old one would have expired by now; the new one holds
    psp.capture(account, capture_request(new.psp_reference, "50.00"))
    assert ledger.invariant_violations() == []


def test_renewal_by_extension(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(reservation_renewal="extend")
    ledger = ledger_for(account)
    old = psp.reserve(account, reserve_request("5.00"))
    ledger.advance(days=3)
    renewed = psp.renew_reservation(account, RenewReservationRequest(idempotency_key=key(), transaction_id="t", psp_reference=old.psp_reference, amount=money("5.00")))
    assert renewed.old_reference_action == "extended"
    assert renewed.reservation.psp_reference == old.psp_reference
    assert renewed.reservation.expires_at > old.expires_at


def test_get_payment(psp: PspClient, account: Account) -> None:
    ref = psp.reserve(account, reserve_request("10.00", customer=CUSTOMER)).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    psp.refund(account, refund_request(ref, "2.50"))
    found = psp.get_payment(account, ref)
    assert (found.status, found.captured, found.refunded, found.customer_id) == (
        PaymentStatus.CAPTURED, money("10.00"), money("2.50"), CUSTOMER.customer_id,
    )
    with pytest.raises(RemoteNotFound):
        psp.get_payment(account, "mpay_missing")


# ---------------------------------------------------------------- payouts
def test_payout_with_fees(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("100.00")).psp_reference
    psp.capture(account, capture_request(ref, "100.00"))
    psp.refund(account, refund_request(ref, "10.00"))
    assert psp.list_payouts(account, None) == []
    [payout] = ledger.run_payout()
    # 1.4 % of 100.00 + 0.25 fixed
    assert (payout.gross, payout.fee, payout.net) == (D("90.00"), D("1.65"), D("88.35"))
    assert sum(line.gross for line in payout.lines) == payout.gross
    assert psp.list_payouts(account, None) == [payout]
    assert ledger.run_payout() == []  # nothing left
    assert ledger.last_event("payout.paid")["data"]["payout_id"] == payout.payout_id


def test_payout_fee_rounding_in_jpy(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(fee_percent="3.6", fee_fixed_minor=0)
    ledger = ledger_for(account)
    ref = psp.reserve(account, reserve_request("1015", "JPY")).psp_reference
    psp.capture(account, capture_request(ref, "1015", "JPY"))
    [payout] = ledger.run_payout()
    assert payout.fee == D("37")  # 36.54 -> 37 (banker's rounding to whole yen)
    assert payout.net == D("978")

"""Every declared capability of the plugin, through the core's plugin manager, over real HTTP
against the sandbox."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payweave.hooks.capabilities import Feature
from payweave.hooks.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotSupported,
    PaymentDeclined,
    RemoteNotFound,
)
from payweave.hooks.models import (
    CaptureRequest,
    Cart,
    CartLine,
    CartUpdateRequest,
    CreditRequest,
    Customer,
    MandateChargeRequest,
    Money,
    OperationStatus,
    PaymentLinkRequest,
    PaymentStatus,
    RefundRequest,
    RenewReservationRequest,
    ReserveRequest,
    VoidRequest,
)

DAY = 86_400


def key() -> str:
    return f"tx-{uuid.uuid4().hex}"


def eur(amount: str, currency: str = "EUR") -> Money:
    return Money.of(amount, currency)


def line(line_id: str, gross: str, *, kind: str = "item", quantity: str = "1", description: str = "") -> CartLine:
    value = Decimal(gross)
    return CartLine(line_id=line_id, kind=kind, quantity=Decimal(quantity), unit_price=value / Decimal(quantity),
                    net_amount=value, gross_amount=value, description=description or f"Line {line_id}")  # fmt: skip


def cart(*lines: CartLine, currency: str = "EUR") -> Cart:
    total = sum((ln.gross_amount for ln in lines), Decimal(0))
    return Cart(currency=currency, lines=lines, total_net=total, total_tax=Decimal(0), total_gross=total)


def reserve(psp, account, amount="100.00", *, token="pm_card_visa", capture=False, with_cart=True, customer=None,
            currency="EUR"):  # fmt: skip
    money = eur(amount, currency)
    request = ReserveRequest(
        idempotency_key=key(), transaction_id=f"T-{uuid.uuid4().hex[:6]}", amount=money,
        cart=cart(line("1", amount), currency=currency) if with_cart else None, capture=capture,
        payment_method_token=token, reference="SO-1001", customer=customer,
    )  # fmt: skip
    return psp.reserve(account, request)


def capture(psp, account, reference, amount, idem=None):
    return psp.capture(account, CaptureRequest(idempotency_key=idem or key(), transaction_id="T", psp_reference=reference,
                                               amount=eur(amount)))  # fmt: skip


def sandbox_now(api) -> datetime:
    return datetime.fromtimestamp(api.control("/clock", method="GET")["now"], UTC)


# ------------------------------------------------------------------------------------ identity
def test_capabilities_follow_the_settings(psp, account, account_factory, sandbox):
    caps = psp.capabilities(account)
    assert caps.declares(Feature.PARTIAL_CAPTURE) and caps.declares(Feature.PARTIAL_REFUND)
    assert caps.declares(Feature.VOID) and not caps.declares(Feature.PARTIAL_VOID)
    assert not caps.declares(Feature.MULTIPLE_CAPTURES) and not caps.declares(Feature.CREDIT)
    assert caps.declares(Feature.RESERVATION_RENEWAL) and caps.declares(Feature.WEBHOOKS)
    assert caps.reservation_validity == timedelta(days=7)
    plain = account_factory(sandbox.url, webhook_secret=None)
    plain_caps = psp.capabilities(plain)
    assert not plain_caps.declares(Feature.RESERVATION_RENEWAL) and not plain_caps.declares(Feature.WEBHOOKS)


def test_secrets_stay_out_of_reprs(account):
    assert "sk_test_payweave_tests" not in repr(account) + repr(account.settings) + str(account.settings)


# ------------------------------------------------------------------------------------ reserve/capture
def test_reserve_then_capture_in_full(psp, account, api):
    result = reserve(psp, account, "100.00")
    assert result.status is PaymentStatus.RESERVED and result.raw_status == "requires_capture"
    assert result.amount == eur("100.00") and result.captured == eur("0")
    assert result.psp_reference.startswith("pi_") and result.operation_reference.startswith("ch_")
    assert abs(result.expires_at - (sandbox_now(api) + timedelta(days=7))) < timedelta(seconds=5)
    pi = api.get(f"/v1/payment_intents/{result.psp_reference}")
    assert pi["amount"] == 10000 and pi["capture_method"] == "manual"
    assert pi["metadata"]["payweave_reference"] == "SO-1001" and pi["metadata"]["payweave_cart_lines"] == "1"
    captured = capture(psp, account, result.psp_reference, "100.00")
    assert captured.status is OperationStatus.SUCCEEDED and captured.amount == eur("100.00")
    assert captured.released is None
    lookup = psp.get_payment(account, result.psp_reference)
    assert (lookup.status, lookup.captured, lookup.refunded) == (PaymentStatus.CAPTURED, eur("100.00"), eur("0"))


def test_partial_capture_reports_what_was_released(psp, account, api):
    result = reserve(psp, account, "100.00")
    captured = capture(psp, account, result.psp_reference, "60.00")
    assert captured.amount == eur("60.00") and captured.released == eur("40.00")
    assert api.get(f"/v1/payment_intents/{result.psp_reference}")["amount_received"] == 6000
    with pytest.raises(NotSupported) as second:  # a second capture needs multicapture, which is not declared
        capture(psp, account, result.psp_reference, "10.00")
    assert second.value.details["feature"] == "multiple_captures"


def test_a_non_final_capture_is_final_at_a_single_capture_psp(psp, account, api):
    result = reserve(psp, account, "10.00")
    captured = psp.capture(account, CaptureRequest(idempotency_key=key(), transaction_id="T", final=False,
                                                   psp_reference=result.psp_reference, amount=eur("4.00")))  # fmt: skip
    assert captured.released == eur("6.00")  # the core learns that nothing more can be captured
    with pytest.raises(NotSupported):
        capture(psp, account, result.psp_reference, "1.00")
    canceled = reserve(psp, account, "10.00")
    psp.void(account, VoidRequest(idempotency_key=key(), transaction_id="T", psp_reference=canceled.psp_reference))
    with pytest.raises(InvalidRequest) as gone:  # a voided reservation is gone, not "captured already"
        capture(psp, account, canceled.psp_reference, "1.00")
    assert gone.value.details["payment_intent_status"] == "canceled"


def test_capture_refuses_more_than_reserved_and_another_currency(psp, account):
    result = reserve(psp, account, "50.00")
    with pytest.raises(InvalidRequest) as too_much:
        capture(psp, account, result.psp_reference, "50.01")
    assert too_much.value.details["code"] == "amount_too_large"
    with pytest.raises(InvalidRequest) as currency:
        psp.capture(account, CaptureRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                            amount=Money.of("50", "JPY")))  # fmt: skip
    assert currency.value.code == "currency_mismatch"


def test_auto_capture_and_no_cart(psp, account, api):
    result = reserve(psp, account, "19.99", capture=True, with_cart=False)
    assert result.status is PaymentStatus.CAPTURED and result.captured == eur("19.99")
    assert api.get(f"/v1/payment_intents/{result.psp_reference}")["capture_method"] == "automatic"


@pytest.mark.parametrize(("amount", "currency", "minor"), [("500", "JPY", 500), ("1.234", "KWD", 1234), ("10.5", "EUR", 1050)])
def test_minor_units_follow_the_currency(psp, account, api, amount, currency, minor):
    result = reserve(psp, account, amount, currency=currency)
    assert api.get(f"/v1/payment_intents/{result.psp_reference}")["amount"] == minor
    assert result.amount == Money.of(amount, currency)


def test_declines_carry_the_decline_code(psp, account):
    with pytest.raises(PaymentDeclined) as generic:
        reserve(psp, account, token="pm_card_chargeDeclined")
    assert generic.value.decline_code == "generic_decline"
    assert generic.value.details["payment_intent_status"] == "requires_payment_method"
    with pytest.raises(PaymentDeclined) as funds:
        reserve(psp, account, token="pm_card_chargeDeclinedInsufficientFunds")
    assert funds.value.decline_code == "insufficient_funds"


def test_same_idempotency_key_returns_the_first_reservation(psp, account, api):
    request = ReserveRequest(idempotency_key=key(), transaction_id="T-1", amount=eur("10.00"),
                             payment_method_token="pm_card_visa")  # fmt: skip
    first = psp.reserve(account, request)
    second = psp.reserve(account, request)
    assert first == second
    assert len(api.get("/v1/payment_intents")["data"]) == 1


# ------------------------------------------------------------------------------------ void
def test_void_releases_the_whole_reservation_only(psp, account, api):
    result = reserve(psp, account, "80.00")
    with pytest.raises(NotSupported):
        psp.void(account, VoidRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                      amount=eur("30.00")))  # fmt: skip
    void_key = key()
    request = VoidRequest(idempotency_key=void_key, transaction_id="T", psp_reference=result.psp_reference,
                          amount=eur("80.00"), reason="requested_by_customer")  # fmt: skip
    voided = psp.void(account, request)
    assert voided.released == eur("80.00") and voided.status is OperationStatus.SUCCEEDED
    assert psp.void(account, request) == voided  # a retry with the same key replays
    pi = api.get(f"/v1/payment_intents/{result.psp_reference}")
    assert (pi["status"], pi["cancellation_reason"]) == ("canceled", "requested_by_customer")
    assert psp.get_payment(account, result.psp_reference).status is PaymentStatus.VOIDED
    with pytest.raises(InvalidRequest):
        psp.void(account, VoidRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference))
    second = reserve(psp, account, "5.00")
    assert psp.void(account, VoidRequest(idempotency_key=key(), transaction_id="T",
                                         psp_reference=second.psp_reference)).released == eur("5.00")  # fmt: skip


# ------------------------------------------------------------------------------------ refund
def test_refund_partial_then_full_then_refused(psp, account, api):
    result = reserve(psp, account, "100.00")
    capture(psp, account, result.psp_reference, "90.00")
    first = psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                              amount=eur("30.00"), lines=(line("1", "30.00"),), reason="return"))  # fmt: skip
    assert first.operation_reference.startswith("re_") and first.amount == eur("30.00")
    assert first.status is OperationStatus.SUCCEEDED
    refund = api.get(f"/v1/refunds/{first.operation_reference}")
    assert refund["metadata"]["payweave_reason"] == "return" and refund["metadata"]["payweave_refund_lines"] == "1"
    rest = psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                             amount=eur("60.00")))  # fmt: skip
    assert rest.amount == eur("60.00")
    with pytest.raises(InvalidRequest) as refused:
        psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                          amount=eur("0.01")))  # fmt: skip
    assert refused.value.details["code"] == "charge_already_refunded"
    lookup = psp.get_payment(account, result.psp_reference)
    assert (lookup.status, lookup.refunded) == (PaymentStatus.REFUNDED, eur("90.00"))


def test_refund_more_than_captured_is_invalid(psp, account):
    result = reserve(psp, account, "20.00", capture=True)
    with pytest.raises(InvalidRequest) as excinfo:
        psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=result.psp_reference,
                                          amount=eur("20.01")))  # fmt: skip
    assert excinfo.value.details["code"] == "amount_too_large"


def test_credit_is_not_offered(psp, account, manager):
    with pytest.raises(NotSupported):
        psp.credit(account, CreditRequest(idempotency_key=key(), transaction_id="T", amount=eur("1.00")))


# ------------------------------------------------------------------------------------ cart update
def test_cart_update_before_reservation_only(psp, account, api):
    pending = reserve(psp, account, "40.00", token=None)
    assert pending.status is PaymentStatus.PENDING and pending.raw_status == "requires_payment_method"
    new_cart = cart(line("1", "40.00"), line("2", "12.50"))
    updated = psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="T",
                                                         psp_reference=pending.psp_reference, stage="before_reservation",
                                                         cart=new_cart))  # fmt: skip
    assert updated.amount == eur("52.50") and updated.status is PaymentStatus.PENDING
    pi = api.get(f"/v1/payment_intents/{pending.psp_reference}")
    assert pi["amount"] == 5250 and pi["metadata"]["payweave_cart_lines"] == "2"
    reserved = reserve(psp, account, "40.00")
    with pytest.raises(NotSupported):
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="T",
                                                   psp_reference=reserved.psp_reference, stage="while_reserved",
                                                   cart=new_cart))  # fmt: skip
    with pytest.raises(InvalidRequest):  # the PSP refuses to change an authorized amount
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="T",
                                                   psp_reference=reserved.psp_reference, stage="before_reservation",
                                                   cart=new_cart))  # fmt: skip


# ------------------------------------------------------------------------------------ pay by link
def link_request(amount="35.00", the_cart=None, capture=False):
    return PaymentLinkRequest(
        idempotency_key=key(), transaction_id="T-LINK", amount=eur(amount), cart=the_cart, reference="SI-7",
        customer=Customer(customer_id="C-9", email="buyer@example.test"),
        success_url="https://shop.test/ok/{CHECKOUT_SESSION_ID}", error_url="https://shop.test/error",
        cancel_url="https://shop.test/cancel", capture=capture,
    )  # fmt: skip


def test_pay_by_link_flow(psp, account, api):
    the_cart = cart(line("1", "25.00", quantity="2", description="Gloves"), line("2", "10.00", description="Shipping"))
    link = psp.create_payment_link(account, link_request("35.00", the_cart))
    assert link.link_id.startswith("cs_test_") and link.url.endswith(link.link_id) and link.psp_reference is None
    items = api.get(f"/v1/checkout/sessions/{link.link_id}/line_items")["data"]
    assert [(i["description"], i["amount_total"]) for i in items] == [("2 x Gloves", 2500), ("Shipping", 1000)]
    session = api.get(f"/v1/checkout/sessions/{link.link_id}")
    assert session["customer_email"] == "buyer@example.test" and session["client_reference_id"] == "T-LINK"
    assert session["metadata"]["payweave_error_url"] == "https://shop.test/error"
    paid = api.control(f"/checkout/{link.link_id}/complete", {"payment_method": "pm_card_visa"})
    assert paid["redirect_url"] == f"https://shop.test/ok/{link.link_id}"
    reference = paid["checkout_session"]["payment_intent"]
    lookup = psp.get_payment(account, reference)
    assert (lookup.status, lookup.amount) == (PaymentStatus.RESERVED, eur("35.00"))


def test_pay_by_link_with_discount_lines_sends_the_total(psp, account, api):
    the_cart = cart(line("1", "50.00"), line("2", "-5.00", kind="discount"))
    link = psp.create_payment_link(account, link_request("45.00", the_cart, capture=True))
    items = api.get(f"/v1/checkout/sessions/{link.link_id}/line_items")["data"]
    assert [(i["description"], i["amount_total"]) for i in items] == [("SI-7", 4500)]
    paid = api.control(f"/checkout/{link.link_id}/complete", {})
    assert psp.get_payment(account, paid["checkout_session"]["payment_intent"]).status is PaymentStatus.CAPTURED


# ------------------------------------------------------------------------------------ recurring
def saved_card(api, pm="pm_card_visa"):
    customer = api.post("/v1/customers", {"metadata": {"payweave_customer_id": "C-77"}})
    seti = api.post("/v1/setup_intents", {"customer": customer["id"], "payment_method": pm, "confirm": True})
    return seti


def mandate_request(reference, amount="12.00", idem=None):
    return MandateChargeRequest(idempotency_key=idem or key(), transaction_id="T-REC", mandate_reference=reference,
                                customer=Customer(customer_id="C-77"), amount=eur(amount), reference="Subscription 3")  # fmt: skip


def test_mandate_charge_is_captured_off_session(psp, account, api):
    seti = saved_card(api)
    idem = key()
    result = psp.charge_mandate(account, mandate_request(seti["mandate"], idem=idem))
    assert result.status is PaymentStatus.CAPTURED and result.captured == eur("12.00")
    again = psp.charge_mandate(account, mandate_request(seti["mandate"], idem=idem))
    assert again.psp_reference == result.psp_reference
    pi = api.get(f"/v1/payment_intents/{result.psp_reference}")
    assert pi["customer"] == seti["customer"] and pi["payment_method"] == seti["payment_method"]
    assert len(api.get("/v1/payment_intents")["data"]) == 1
    by_pm = psp.charge_mandate(account, mandate_request(seti["payment_method"], "3.00"))
    assert by_pm.status is PaymentStatus.CAPTURED


def test_mandate_charge_declines(psp, account, api):
    with pytest.raises(PaymentDeclined) as failing:
        psp.charge_mandate(account, mandate_request(saved_card(api, "pm_card_chargeCustomerFail")["mandate"]))
    assert failing.value.decline_code == "generic_decline"
    customer = api.post("/v1/customers", {})
    pm = api.post("/v1/payment_methods/pm_card_authenticationRequired/attach", {"customer": customer["id"]})
    with pytest.raises(PaymentDeclined) as auth:
        psp.charge_mandate(account, mandate_request(pm["id"]))
    assert auth.value.decline_code == "authentication_required"
    detached = saved_card(api)
    api.post(f"/v1/payment_methods/{detached['payment_method']}/detach")
    with pytest.raises(InvalidRequest) as inactive:
        psp.charge_mandate(account, mandate_request(detached["mandate"]))
    assert inactive.value.code == "mandate_inactive"
    with pytest.raises(RemoteNotFound):
        psp.charge_mandate(account, mandate_request("mandate_unknown"))


# ------------------------------------------------------------------------------------ renewal & expiry
def test_reservation_renewal_reauthorizes_and_voids_the_old_one(psp, account, api):
    customer = Customer(customer_id="C-REN", name="Renate", email="renate@example.test")
    old = reserve(psp, account, "70.00", customer=customer)
    pi = api.get(f"/v1/payment_intents/{old.psp_reference}")
    assert pi["customer"] and pi["setup_future_usage"] == "off_session"
    api.control("/clock", {"advance_seconds": 6 * DAY})
    renewal = psp.renew_reservation(account, RenewReservationRequest(idempotency_key=key(), transaction_id="T",
                                                                      psp_reference=old.psp_reference, amount=eur("70.00")))  # fmt: skip
    assert renewal.old_reference_action == "voided"
    new = renewal.reservation
    assert new.status is PaymentStatus.RESERVED and new.psp_reference != old.psp_reference
    # a merchant-initiated Visa authorization holds 4 days 18 hours
    assert abs(new.expires_at - (sandbox_now(api) + timedelta(days=4, hours=18))) < timedelta(seconds=5)
    assert api.get(f"/v1/payment_intents/{old.psp_reference}")["status"] == "canceled"
    # the same customer is found again, not created twice
    reserve(psp, account, "1.00", customer=customer)
    assert len(api.get("/v1/customers")["data"]) == 1
    no_card = reserve(psp, account, "5.00")
    with pytest.raises(InvalidRequest) as excinfo:
        psp.renew_reservation(account, RenewReservationRequest(idempotency_key=key(), transaction_id="T",
                                                                psp_reference=no_card.psp_reference, amount=eur("5.00")))  # fmt: skip
    assert excinfo.value.code == "renewal_not_possible"


def test_expired_reservation_is_reported_and_cannot_be_captured(psp, account, api):
    result = reserve(psp, account, "15.00")
    api.control("/clock", {"advance_seconds": 7 * DAY + 1})
    assert psp.get_payment(account, result.psp_reference).status is PaymentStatus.EXPIRED
    with pytest.raises(InvalidRequest):
        capture(psp, account, result.psp_reference, "15.00")


def test_lookup_errors(psp, account, account_factory, sandbox):
    with pytest.raises(RemoteNotFound):
        psp.get_payment(account, "pi_does_not_exist")
    for foreign in ("cs_not_a_payment_intent", "pi_x/capture", "pi_../../v1/refunds", "unknown_1234"):
        with pytest.raises(RemoteNotFound):  # never reaches another endpoint
            psp.get_payment(account, foreign)
    for amount in ("0", "-5.00"):
        with pytest.raises(InvalidRequest):
            reserve(psp, account, amount, with_cart=False)
    with pytest.raises(AuthenticationFailed):
        psp.get_payment(account_factory(sandbox.url, api_key="sk_live_wrong"), "pi_x")


def test_currency_restriction(psp, account_factory, sandbox):
    restricted = account_factory(sandbox.url, currencies="EUR,CHF")
    with pytest.raises(NotSupported):
        reserve(psp, restricted, "10.00", currency="USD")
    assert reserve(psp, restricted, "10.00", currency="CHF").status is PaymentStatus.RESERVED


# ------------------------------------------------------------------------------------ payouts
def test_payouts_with_fees_and_lines(psp, account, api):
    first = reserve(psp, account, "100.00")
    capture(psp, account, first.psp_reference, "100.00")
    second = reserve(psp, account, "20.00", capture=True)
    psp.refund(account, RefundRequest(idempotency_key=key(), transaction_id="T", psp_reference=first.psp_reference,
                                      amount=eur("10.00")))  # fmt: skip
    before = datetime.fromtimestamp(api.control("/clock", method="GET")["now"] - 1, UTC)
    api.control("/clock", {"advance_seconds": 2 * DAY})
    api.control("/payouts/run")
    payouts = psp.list_payouts(account, None)
    assert len(payouts) == 1
    payout = payouts[0]
    # fees: 100.00 -> 2.90 + 0.30 = 3.20; 20.00 -> 0.58 + 0.30 = 0.88; refunds carry none
    assert (payout.gross, payout.fee, payout.net) == (Decimal("110.00"), Decimal("4.08"), Decimal("105.92"))
    assert payout.currency == "EUR" and payout.status == "paid"
    kinds = sorted((ln.kind, ln.psp_reference, ln.gross, ln.fee) for ln in payout.lines)
    assert kinds == sorted([
        ("charge", first.psp_reference, Decimal("100.00"), Decimal("3.20")),
        ("charge", second.psp_reference, Decimal("20.00"), Decimal("0.88")),
        ("refund", first.psp_reference, Decimal("-10.00"), Decimal("0.00")),
    ])  # fmt: skip
    assert psp.list_payouts(account, before + timedelta(days=3)) == []
    assert [p.payout_id for p in psp.list_payouts(account, before)] == [payout.payout_id]
    # a failed payout sends the money back; the next run pays it with the same lines
    third = reserve(psp, account, "1.00", capture=True)
    api.control("/clock", {"advance_seconds": 2 * DAY})
    api.control("/payouts/run", {"outcome": "failed"})
    api.control("/payouts/run")
    later = psp.list_payouts(account, None)
    assert [p.status for p in later] == ["paid", "failed", "paid"]
    assert later[1].lines == () and later[1].net == later[2].net == Decimal("0.67")
    assert [ln.psp_reference for ln in later[2].lines] == [third.psp_reference]

"""The payweave PSP plugin conformance suite.

Use it from your plugin's repository (the SQLAlchemy dialect-suite pattern)::

    # tests/test_conformance.py
    from payweave.core.conformance.suite import *  # noqa: F401,F403

and name the plugin (``--payweave-plugin my_psp`` or ``payweave_plugin = "my_psp"`` in the pytest
ini options), or run ``payweave conformance my_psp``. Each test proves one declared feature,
checks the refusal of one undeclared feature, or checks a contract every plugin must keep;
which applies is computed from the plugin's own ``PspCapabilities``. To replace a single test,
subclass its class under the same name and override the method (see docs/conformance.md).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from payweave.hooks.capabilities import Feature
from payweave.hooks.errors import (
    InvalidRequest,
    NotSupported,
    PaymentDeclined,
    PayweaveError,
    RemoteNotFound,
    WebhookVerificationFailed,
)
from payweave.hooks.hookspecs import FEATURE_HOOKS
from payweave.hooks.models import EventType, OperationStatus, PaymentStatus, WebhookRequest
from payweave.hooks.money import Money, currency_exponent

from .harness import Harness
from .requirements import Contract, NotApplicable, conformance, refusal_params, written_skip

__all__ = [
    "TestCapabilities",
    "TestCapture",
    "TestCartUpdate",
    "TestCredit",
    "TestCurrencyPrecision",
    "TestIdempotency",
    "TestNoSecrets",
    "TestPayByLink",
    "TestPaymentLookup",
    "TestPayouts",
    "TestRecurring",
    "TestRefund",
    "TestRefusals",
    "TestRenewal",
    "TestReserve",
    "TestTypedErrors",
    "TestVoid",
    "TestWebhooks",
    "written_skip",
]

_OK = (OperationStatus.SUCCEEDED, OperationStatus.PENDING)


class _Suite:
    """Base of the suite classes: gates every test on the plugin's requirements."""

    @pytest.fixture(autouse=True)
    def _payweave_gate(self, request: pytest.FixtureRequest, payweave: Harness) -> None:
        payweave.gate(request.node)


# =============================================================================== proofs
class TestReserve(_Suite):
    @conformance(proves=Feature.RESERVE)
    def test_reserve(self, payweave: Harness) -> None:
        result = payweave.reserve("10.00")
        assert result.status is PaymentStatus.RESERVED, f"status {result.status.value!r}, expected 'reserved'"
        assert result.psp_reference, "a reservation needs the PSP's reference"
        assert result.amount == payweave.money("10.00")
        assert result.captured == payweave.money("0"), "nothing is captured by a reservation"

    @conformance(proves=Feature.AUTO_CAPTURE)
    def test_auto_capture(self, payweave: Harness) -> None:
        result = payweave.reserve("10.00", capture=True)
        assert result.status is PaymentStatus.CAPTURED, f"status {result.status.value!r}, expected 'captured'"
        assert result.amount == payweave.money("10.00") and result.captured == payweave.money("10.00")

    @conformance(proves=Feature.NO_CART)
    def test_reserve_without_cart(self, payweave: Harness) -> None:
        capture = not payweave.declares(Feature.RESERVE)
        result = payweave.reserve("10.00", cart=False, capture=capture)
        assert result.status in (PaymentStatus.RESERVED, PaymentStatus.CAPTURED)
        assert result.amount == payweave.money("10.00")

    @conformance(proves=Feature.RESERVE)
    def test_expired_reservation_cannot_be_captured(self, payweave: Harness) -> None:
        validity = payweave.caps.reservation_validity
        if validity is None:
            raise NotApplicable(f"{payweave.plugin} declares reservations that do not expire")
        result = payweave.reserved("10.00")
        payweave.env_call("advance_time", validity.total_seconds() + 60)
        with payweave.expect(InvalidRequest, what="capturing an expired reservation"):
            payweave.capture(result.psp_reference, "10.00")
        payweave.assert_moves(result.psp_reference, captures=0)


class TestCapture(_Suite):
    @conformance(proves=Feature.CAPTURE)
    def test_full_capture(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        result = payweave.capture(ref, "10.00")
        assert result.status in _OK
        assert result.psp_reference == ref and result.operation_reference
        assert result.amount == payweave.money("10.00")
        payweave.assert_moves(ref, captures=1)

    @conformance(proves=Feature.CAPTURE)
    def test_capture_more_than_reserved_is_refused(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        with payweave.expect(InvalidRequest, what="capturing one minor unit more than reserved"):
            payweave.capture(ref, payweave.plus_smallest("10.00"))
        payweave.assert_moves(ref, captures=0)
        assert payweave.capture(ref, "10.00").amount == payweave.money("10.00"), "the refusal must leave the reservation intact"

    @conformance(proves=Feature.PARTIAL_CAPTURE)
    def test_partial_capture(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        result = payweave.capture(ref, "4.00", final=True)
        assert result.amount == payweave.money("4.00")
        if result.released is not None:
            assert result.released == payweave.money("6.00"), "a final partial capture releases the rest"
        with payweave.expect(InvalidRequest, NotSupported, what="capturing after a final capture"):
            payweave.capture(ref, "1.00")
        payweave.assert_moves(ref, captures=1)
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            assert payweave.psp.get_payment(payweave.account, ref).captured == payweave.money("4.00")

    @conformance(proves=Feature.MULTIPLE_CAPTURES)
    def test_multiple_captures(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        for amount, final in (("3.00", False), ("3.00", False), ("4.00", True)):
            result = payweave.capture(ref, amount, final=final)
            assert result.amount == payweave.money(amount)
        with payweave.expect(InvalidRequest, what="capturing beyond the reservation"):
            payweave.capture(ref, payweave.smallest())
        payweave.assert_moves(ref, captures=3)
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            assert payweave.psp.get_payment(payweave.account, ref).captured == payweave.money("10.00")


class TestVoid(_Suite):
    @conformance(proves=Feature.VOID)
    def test_full_void(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        result = payweave.void(ref)
        assert result.status in _OK and result.amount == payweave.money("10.00")
        with payweave.expect(InvalidRequest, what="capturing a voided reservation"):
            payweave.capture(ref, "10.00")
        payweave.assert_moves(ref, captures=0, voids=1)

    @conformance(proves=Feature.PARTIAL_VOID)
    def test_partial_void(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        assert payweave.void(ref, "4.00").amount == payweave.money("4.00")
        with payweave.expect(InvalidRequest, NotSupported, what="capturing more than is left after a partial void"):
            payweave.capture(ref, payweave.plus_smallest("6.00"))
        assert payweave.capture(ref, "6.00").amount == payweave.money("6.00"), "the rest stays capturable"
        payweave.assert_moves(ref, captures=1, voids=1)


class TestRefund(_Suite):
    @conformance(proves=Feature.REFUND)
    def test_full_refund(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        result = payweave.refund(ref, "10.00")
        assert result.status in _OK and result.amount == payweave.money("10.00")
        with payweave.expect(InvalidRequest, what="refunding a fully refunded payment"):
            payweave.refund(ref, payweave.smallest())
        payweave.assert_moves(ref, refunds=1)

    @conformance(proves=Feature.REFUND)
    def test_refund_more_than_captured_is_refused(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        with payweave.expect(InvalidRequest, what="refunding one minor unit more than captured"):
            payweave.refund(ref, payweave.plus_smallest("10.00"))
        payweave.assert_moves(ref, refunds=0)

    @conformance(proves=Feature.PARTIAL_REFUND)
    def test_partial_refunds(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        first = payweave.refund(ref, "3.00")
        assert first.amount == payweave.money("3.00")
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            refunded = payweave.psp.get_payment(payweave.account, ref).refunded
            assert refunded == payweave.money("3.00"), f"after a partial refund of 3.00 the PSP shows {refunded} refunded"
        try:
            second = payweave.refund(ref, "7.00")
        except PayweaveError as exc:
            pytest.fail(f"the rest (7.00) of a 10.00 payment could not be refunded after refunding 3.00: {exc!r}", pytrace=False)
        assert second.amount == payweave.money("7.00")
        with payweave.expect(InvalidRequest, what="refunding beyond the captured amount"):
            payweave.refund(ref, payweave.smallest())
        payweave.assert_moves(ref, refunds=2)


class TestCredit(_Suite):
    @conformance(proves=Feature.CREDIT)
    def test_credit(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        result = payweave.credit(ref, "4.00")
        assert result.status in _OK and result.amount == payweave.money("4.00") and result.operation_reference
        payweave.assert_moves(ref, credits=1)


class TestCartUpdate(_Suite):
    @conformance(proves=Feature.CART_UPDATE_BEFORE_RESERVATION)
    def test_cart_update_before_reservation(self, payweave: Harness) -> None:
        ref = payweave.prepared_payment("10.00")
        result = payweave.update_cart(ref, "before_reservation", "12.00")
        assert result.psp_reference == ref
        assert result.amount == payweave.money("12.00"), f"the payment stands at {result.amount} after the cart changed to 12.00"
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            assert payweave.psp.get_payment(payweave.account, ref).amount == payweave.money("12.00")

    @conformance(proves=Feature.CART_UPDATE_WHILE_RESERVED)
    def test_cart_update_while_reserved(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        result = payweave.update_cart(ref, "while_reserved", "8.00")
        assert result.amount == payweave.money("8.00"), f"the reservation stands at {result.amount} after the cart changed to 8.00"
        with payweave.expect(InvalidRequest, NotSupported, what="capturing more than the updated cart"):
            payweave.capture(ref, payweave.plus_smallest("8.00"))
        assert payweave.capture(ref, "8.00").amount == payweave.money("8.00")


class TestPayByLink(_Suite):
    @conformance(proves=Feature.PAY_BY_LINK)
    def test_payment_link(self, payweave: Harness) -> None:
        webhooks, lookup = payweave.declares(Feature.WEBHOOKS), payweave.declares(Feature.PAYMENT_LOOKUP)
        if not (webhooks or lookup):
            pytest.fail("pay_by_link needs webhooks or payment_lookup: the core learns a link's outcome only from them", pytrace=False)
        link = payweave.create_link("25.00")
        assert link.link_id and link.url.startswith(("https://", "http://")), f"not a usable link: {link!r}"
        ref = payweave.env_call("complete_payment_link", link, "paid")
        assert ref, "a paid link must name its payment"
        if link.psp_reference:
            assert ref == link.psp_reference
        if webhooks:
            request = payweave.env_call("signed_webhook", EventType.LINK_COMPLETED, ref)
            events = [e for e in payweave.psp.parse_webhook(payweave.account, request) if e.type is EventType.LINK_COMPLETED]
            assert events, "the link_completed webhook parsed to no link_completed event"
            assert events[0].link_id == link.link_id and events[0].psp_reference == ref
        if lookup:
            found = payweave.psp.get_payment(payweave.account, ref)
            assert found.status in (PaymentStatus.RESERVED, PaymentStatus.CAPTURED)
            assert found.amount == payweave.money("25.00")


class TestRecurring(_Suite):
    @conformance(proves=Feature.RECURRING)
    def test_mandate_charge(self, payweave: Harness) -> None:
        mandate = payweave.env_call("create_mandate", payweave.customer)
        result = payweave.charge_mandate(mandate, "15.00")
        assert result.status is PaymentStatus.CAPTURED, f"status {result.status.value!r}, expected 'captured'"
        assert result.amount == payweave.money("15.00") and result.captured == payweave.money("15.00")


class TestRenewal(_Suite):
    @conformance(proves=Feature.RESERVATION_RENEWAL)
    def test_renewal(self, payweave: Harness) -> None:
        old = payweave.reserved("10.00")
        renewal = payweave.renew(old.psp_reference, "10.00")
        new = renewal.reservation
        assert new.status is PaymentStatus.RESERVED and new.amount == payweave.money("10.00")
        if renewal.old_reference_action == "extended":
            assert new.psp_reference == old.psp_reference, "an extension keeps the reference"
            if old.expires_at and new.expires_at:
                assert new.expires_at >= old.expires_at
        else:
            assert new.psp_reference != old.psp_reference, "a reauthorization makes a new reservation"
            if renewal.old_reference_action == "voided":
                with payweave.expect(InvalidRequest, what="capturing the voided old reservation"):
                    payweave.capture(old.psp_reference, "10.00")
        assert payweave.capture(new.psp_reference, "10.00").amount == payweave.money("10.00")


class TestWebhooks(_Suite):
    def _captured_webhook(self, payweave: Harness) -> tuple[str, WebhookRequest]:
        ref = payweave.captured("10.00")
        return ref, payweave.env_call("signed_webhook", EventType.CAPTURED, ref)

    @conformance(proves=Feature.WEBHOOKS)
    def test_webhook_verified_and_parsed(self, payweave: Harness) -> None:
        ref, request = self._captured_webhook(payweave)
        events = payweave.psp.parse_webhook(payweave.account, request)
        ours = [e for e in events if e.psp_reference == ref and e.type is EventType.CAPTURED]
        assert ours, f"no 'captured' event for {ref} in {[(e.type.value, e.psp_reference) for e in events]}"
        assert all(e.event_id for e in events), "every event needs the PSP's event id (the core deduplicates on it)"
        for event in ours:
            for amount in (event.amount, event.total_captured):
                if amount is not None:
                    assert amount == payweave.money("10.00"), f"the webhook reports {amount} for a 10.00 capture"
        again = payweave.psp.parse_webhook(payweave.account, request)
        assert [e.event_id for e in again] == [e.event_id for e in events], "a redelivery must keep its event ids"

    @conformance(proves=Feature.WEBHOOKS)
    def test_tampered_webhook_is_refused(self, payweave: Harness) -> None:
        _, request = self._captured_webhook(payweave)
        index = len(request.body) // 2
        flipped = request.body[:index] + bytes([request.body[index] ^ 0x01]) + request.body[index + 1:]
        with payweave.expect(WebhookVerificationFailed, what="a webhook with a changed body"):
            payweave.psp.parse_webhook(payweave.account, request.model_copy(update={"body": flipped}))
        unsigned = request.model_copy(update={"headers": {"content-type": "application/json"}})
        with payweave.expect(WebhookVerificationFailed, what="a webhook without a signature"):
            payweave.psp.parse_webhook(payweave.account, unsigned)

    @conformance(proves=Feature.WEBHOOKS)
    def test_stale_webhook_is_refused(self, payweave: Harness) -> None:
        _, request = self._captured_webhook(payweave)
        late = request.model_copy(update={"received_at": request.received_at + timedelta(days=1)})
        with payweave.expect(WebhookVerificationFailed, what="a webhook received a day after it was signed"):
            payweave.psp.parse_webhook(payweave.account, late)


class TestPayouts(_Suite):
    @conformance(proves=Feature.PAYOUTS)
    def test_payouts_with_fees(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        payweave.env_call("run_payout")
        payouts = payweave.psp.list_payouts(payweave.account, None)
        assert payouts, "no payout listed after the PSP paid out a captured payment"
        for payout in payouts:
            if payout.lines:
                assert sum(line.gross for line in payout.lines) == payout.gross, f"{payout.payout_id}: lines do not add up to gross"
                assert sum(line.fee for line in payout.lines) == payout.fee, f"{payout.payout_id}: line fees do not add up"
        if any(p.lines for p in payouts):
            assert any(line.psp_reference == ref for p in payouts for line in p.lines), f"no payout line for {ref}"
        later = payweave.psp.list_payouts(payweave.account, datetime.now(UTC) + timedelta(days=3650))
        assert later == [], "payouts created after `since` only"


class TestPaymentLookup(_Suite):
    @conformance(proves=Feature.PAYMENT_LOOKUP)
    def test_get_payment(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        found = payweave.psp.get_payment(payweave.account, ref)
        assert found.psp_reference == ref and found.status is PaymentStatus.CAPTURED
        assert found.amount == payweave.money("10.00") and found.captured == payweave.money("10.00")
        assert found.refunded == payweave.money("0")
        assert found.capturable in (None, payweave.money("0")), "a captured payment has nothing left to capture"
        if payweave.declares(Feature.RESERVE) and payweave.caps.manual_capture:
            held = payweave.psp.get_payment(payweave.account, payweave.reserved("7.00").psp_reference)
            assert held.status is PaymentStatus.RESERVED and held.captured == payweave.money("0")
            assert held.capturable in (None, payweave.money("7.00")), "capturable: what is still reserved"
        with payweave.expect(RemoteNotFound, what="looking up an unknown reference"):
            payweave.psp.get_payment(payweave.account, payweave.unknown_reference())


# =============================================================================== refusals
def _reserved_or_unknown(payweave: Harness) -> tuple[str, bool]:
    if payweave.declares(Feature.RESERVE):
        return payweave.reserved("10.00").psp_reference, True
    return payweave.unknown_reference(), False


def _refuse(payweave: Harness, feature: Feature, call: Callable[[], Any]) -> None:
    with payweave.expect(NotSupported, what=f"an operation needing {feature.value} (not declared)"):
        call()


def _refuse_reserve(p: Harness) -> None:
    _refuse(p, Feature.RESERVE, lambda: p.reserve("10.00", capture=False))


def _refuse_auto_capture(p: Harness) -> None:
    _refuse(p, Feature.AUTO_CAPTURE, lambda: p.reserve("10.00", capture=True))


def _refuse_no_cart(p: Harness) -> None:
    _refuse(p, Feature.NO_CART, lambda: p.reserve("10.00", cart=False, capture=not p.declares(Feature.RESERVE)))


def _refuse_capture(p: Harness) -> None:
    ref = p.captured("10.00") if p.declares(Feature.AUTO_CAPTURE) else p.unknown_reference()
    _refuse(p, Feature.CAPTURE, lambda: p.capture(ref, "10.00"))


def _refuse_partial_capture(p: Harness) -> None:
    if not p.declares(Feature.CAPTURE):
        return _refuse_capture(p)
    ref = p.reserved("10.00").psp_reference
    _refuse(p, Feature.PARTIAL_CAPTURE, lambda: p.capture(ref, "4.00"))
    p.assert_moves(ref, captures=0)
    assert p.capture(ref, "10.00").amount == p.money("10.00"), "the refusal must leave the reservation capturable"


def _refuse_multiple_captures(p: Harness) -> None:
    if not p.declares(Feature.CAPTURE):
        return _refuse_capture(p)
    ref = p.reserved("10.00").psp_reference
    if p.declares(Feature.PARTIAL_CAPTURE):
        p.capture(ref, "4.00", final=False)
        _refuse(p, Feature.MULTIPLE_CAPTURES, lambda: p.capture(ref, "1.00"))
    else:  # the first capture took everything: "nothing left" is as good a refusal
        p.capture(ref, "10.00")
        with p.expect(NotSupported, InvalidRequest, what="a second capture (multiple_captures not declared)"):
            p.capture(ref, p.smallest())
    p.assert_moves(ref, captures=1)


def _refuse_void(p: Harness) -> None:
    ref, real = _reserved_or_unknown(p)
    _refuse(p, Feature.VOID, lambda: p.void(ref))
    if real:
        p.assert_moves(ref, voids=0)
        assert p.capture(ref, "10.00").amount == p.money("10.00")


def _refuse_partial_void(p: Harness) -> None:
    if not p.declares(Feature.VOID):
        return _refuse_void(p)
    ref = p.reserved("10.00").psp_reference
    _refuse(p, Feature.PARTIAL_VOID, lambda: p.void(ref, "4.00"))
    p.assert_moves(ref, voids=0)
    assert p.void(ref).amount == p.money("10.00"), "the whole reservation can still be voided"


def _refuse_refund(p: Harness) -> None:
    ref = p.captured("10.00")
    _refuse(p, Feature.REFUND, lambda: p.refund(ref, "10.00"))
    p.assert_moves(ref, refunds=0)


def _refuse_partial_refund(p: Harness) -> None:
    if not p.declares(Feature.REFUND):
        return _refuse_refund(p)
    ref = p.captured("10.00")
    _refuse(p, Feature.PARTIAL_REFUND, lambda: p.refund(ref, "4.00"))
    p.assert_moves(ref, refunds=0)
    assert p.refund(ref, "10.00").amount == p.money("10.00"), "the whole amount can still be refunded"


def _refuse_credit(p: Harness) -> None:
    ref = p.captured("10.00")
    _refuse(p, Feature.CREDIT, lambda: p.credit(ref, "4.00"))
    p.assert_moves(ref, credits=0)


def _refuse_cart_before(p: Harness) -> None:
    _refuse(p, Feature.CART_UPDATE_BEFORE_RESERVATION, lambda: p.update_cart(p.unknown_reference(), "before_reservation", "12.00"))


def _refuse_cart_while(p: Harness) -> None:
    ref, real = _reserved_or_unknown(p)
    _refuse(p, Feature.CART_UPDATE_WHILE_RESERVED, lambda: p.update_cart(ref, "while_reserved", "8.00"))
    if real:
        assert p.capture(ref, "10.00").amount == p.money("10.00"), "the reservation keeps its amount"


def _refuse_recurring(p: Harness) -> None:
    _refuse(p, Feature.RECURRING, lambda: p.charge_mandate(p.unknown_reference(), "15.00"))


def _refuse_renewal(p: Harness) -> None:
    ref, _ = _reserved_or_unknown(p)
    _refuse(p, Feature.RESERVATION_RENEWAL, lambda: p.renew(ref, "10.00"))


def _refuse_link(p: Harness) -> None:
    _refuse(p, Feature.PAY_BY_LINK, lambda: p.create_link("25.00"))


def _refuse_webhooks(p: Harness) -> None:
    request = WebhookRequest(headers={"content-type": "application/json"}, body=b"{}", received_at=datetime.now(UTC))
    _refuse(p, Feature.WEBHOOKS, lambda: p.psp.parse_webhook(p.account, request))


def _refuse_payouts(p: Harness) -> None:
    _refuse(p, Feature.PAYOUTS, lambda: p.psp.list_payouts(p.account, None))


def _refuse_lookup(p: Harness) -> None:
    _refuse(p, Feature.PAYMENT_LOOKUP, lambda: p.psp.get_payment(p.account, p.unknown_reference()))


#: How to attempt each feature when it is not declared (the contract wants NotSupported).
REFUSAL_ATTEMPTS: dict[Feature, Callable[[Harness], None]] = {
    Feature.RESERVE: _refuse_reserve,
    Feature.AUTO_CAPTURE: _refuse_auto_capture,
    Feature.CAPTURE: _refuse_capture,
    Feature.PARTIAL_CAPTURE: _refuse_partial_capture,
    Feature.MULTIPLE_CAPTURES: _refuse_multiple_captures,
    Feature.VOID: _refuse_void,
    Feature.PARTIAL_VOID: _refuse_partial_void,
    Feature.REFUND: _refuse_refund,
    Feature.PARTIAL_REFUND: _refuse_partial_refund,
    Feature.CREDIT: _refuse_credit,
    Feature.CART_UPDATE_BEFORE_RESERVATION: _refuse_cart_before,
    Feature.CART_UPDATE_WHILE_RESERVED: _refuse_cart_while,
    Feature.RECURRING: _refuse_recurring,
    Feature.RESERVATION_RENEWAL: _refuse_renewal,
    Feature.PAY_BY_LINK: _refuse_link,
    Feature.NO_CART: _refuse_no_cart,
    Feature.WEBHOOKS: _refuse_webhooks,
    Feature.PAYOUTS: _refuse_payouts,
    Feature.PAYMENT_LOOKUP: _refuse_lookup,
}
assert set(REFUSAL_ATTEMPTS) == set(Feature), "every Feature needs a refusal attempt in the conformance suite"


class TestRefusals(_Suite):
    @pytest.mark.parametrize("feature", refusal_params())
    def test_refuses(self, payweave: Harness, feature: Feature) -> None:
        REFUSAL_ATTEMPTS[feature](payweave)


# =============================================================================== contracts
class TestIdempotency(_Suite):
    @conformance(contract=Contract.IDEMPOTENCY)
    def test_idempotent_reserve(self, payweave: Harness) -> None:
        capture = not payweave.declares(Feature.RESERVE)
        request = payweave.reserve_request("10.00", capture=capture)
        first = payweave.psp.reserve(payweave.account, request)
        second = payweave.psp.reserve(payweave.account, request)
        assert second.psp_reference == first.psp_reference, (
            f"the same idempotency key made a second payment ({first.psp_reference} then {second.psp_reference})"
        )
        assert second.amount == first.amount and second.status == first.status
        if capture:
            payweave.assert_moves(first.psp_reference, captures=1)

    @conformance(contract=Contract.IDEMPOTENCY, needs=Feature.CAPTURE)
    def test_idempotent_capture(self, payweave: Harness) -> None:
        ref = payweave.reserved("10.00").psp_reference
        request = payweave.capture_request(ref, "10.00")
        first = payweave.psp.capture(payweave.account, request)
        try:
            second = payweave.psp.capture(payweave.account, request)
        except PayweaveError as exc:
            pytest.fail(f"repeating a capture with the same idempotency key failed instead of returning the first result: {exc!r}", pytrace=False)
        assert second.operation_reference == first.operation_reference, "the same key captured twice"
        assert second.amount == first.amount
        payweave.assert_moves(ref, captures=1)
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            assert payweave.psp.get_payment(payweave.account, ref).captured == payweave.money("10.00")

    @conformance(contract=Contract.IDEMPOTENCY, needs=Feature.REFUND)
    def test_idempotent_refund(self, payweave: Harness) -> None:
        ref = payweave.captured("10.00")
        amount = "4.00" if payweave.declares(Feature.PARTIAL_REFUND) else "10.00"
        request = payweave.refund_request(ref, amount)
        first = payweave.psp.refund(payweave.account, request)
        try:
            second = payweave.psp.refund(payweave.account, request)
        except PayweaveError as exc:
            pytest.fail(f"repeating a refund with the same idempotency key failed instead of returning the first result: {exc!r}", pytrace=False)
        assert second.operation_reference == first.operation_reference, "the same key refunded twice"
        payweave.assert_moves(ref, refunds=1)
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            assert payweave.psp.get_payment(payweave.account, ref).refunded == payweave.money(amount)


class TestTypedErrors(_Suite):
    @conformance(contract=Contract.TYPED_ERRORS)
    def test_decline_is_a_typed_error(self, payweave: Harness) -> None:
        token = payweave.env_call("decline_token")
        with payweave.expect(PaymentDeclined, what="reserving with the environment's decline token") as caught:
            payweave.reserve("10.00", token=token, capture=not payweave.declares(Feature.RESERVE))
        assert caught.error is not None and not caught.error.retryable

    @conformance(contract=Contract.TYPED_ERRORS)
    def test_invalid_amount_is_a_typed_error(self, payweave: Harness) -> None:
        with payweave.expect(InvalidRequest, what="reserving a negative amount"):
            payweave.reserve("-10.00", capture=not payweave.declares(Feature.RESERVE))

    @conformance(contract=Contract.TYPED_ERRORS)
    def test_unknown_payment_is_a_typed_error(self, payweave: Harness) -> None:
        ref = payweave.unknown_reference()
        if payweave.declares(Feature.CAPTURE):
            call: Callable[[], Any] = lambda: payweave.capture(ref, "10.00")  # noqa: E731
        elif payweave.declares(Feature.REFUND):
            call = lambda: payweave.refund(ref, "10.00")  # noqa: E731
        else:
            raise NotApplicable(f"{payweave.plugin} declares no operation on an existing payment")
        with payweave.expect(InvalidRequest, RemoteNotFound, what=f"an operation on the unknown payment {ref}"):
            call()


#: One currency per ISO 4217 exponent, with amounts that expose rounding and float errors.
PRECISION_CASES = [
    pytest.param("JPY", "1235", 0, id="JPY"),
    pytest.param("EUR", "10.05", 2, id="EUR"),
    pytest.param("KWD", "1.235", 3, id="KWD"),
]


class TestCurrencyPrecision(_Suite):
    @conformance(contract=Contract.CURRENCY_PRECISION)
    @pytest.mark.parametrize(("currency", "amount", "exponent"), PRECISION_CASES)
    def test_amounts_in_currency_precision(self, payweave: Harness, currency: str, amount: str, exponent: int) -> None:
        assert currency_exponent(currency) == exponent
        expected = Money.of(amount, currency)
        capture = not payweave.declares(Feature.RESERVE)
        accepted = payweave.caps.currencies
        if accepted is not None and currency not in accepted:
            with payweave.expect(NotSupported, what=f"a payment in {currency}, which the plugin does not declare"):
                payweave.reserve(amount, currency=currency, capture=capture)
            return
        result = payweave.reserve(amount, currency=currency, capture=capture)
        assert result.amount == expected, f"reserved {expected}, the plugin reports {result.amount}"
        ref = result.psp_reference
        if not capture:
            captured = payweave.capture(ref, amount, currency=currency)
            assert captured.amount == expected, f"captured {expected}, the plugin reports {captured.amount}"
        if payweave.declares(Feature.REFUND):
            part = payweave.smallest(currency) if payweave.declares(Feature.PARTIAL_REFUND) else expected
            refunded = payweave.refund(ref, part)
            assert refunded.amount == part, f"refunded {part}, the plugin reports {refunded.amount}"
        if payweave.declares(Feature.PAYMENT_LOOKUP):
            found = payweave.psp.get_payment(payweave.account, ref)
            assert found.amount == expected and found.captured == expected, (
                f"the PSP holds {found.amount} / captured {found.captured} for a {expected} payment"
            )
        if payweave.declares(Feature.WEBHOOKS) and payweave.can("signed_webhook"):
            request = payweave.env_call("signed_webhook", EventType.CAPTURED, ref)
            for event in payweave.psp.parse_webhook(payweave.account, request):
                if event.psp_reference == ref and event.type is EventType.CAPTURED and event.amount is not None:
                    assert event.amount == expected, f"the capture webhook reports {event.amount} for {expected}"


class TestNoSecrets(_Suite):
    @conformance(contract=Contract.NO_SECRETS)
    def test_no_secrets_in_logs_or_reprs(self, payweave: Harness, capsys: pytest.CaptureFixture[str]) -> None:
        secrets = payweave.secrets()
        if not secrets:
            pytest.skip("the environment names no secrets and the account's settings hold no SecretStr")
        settings = payweave.account.settings
        if settings is not None:
            for name in type(settings).model_fields:
                value = getattr(settings, name)
                assert not (isinstance(value, str) and value in secrets), (
                    f"settings field {name!r} holds a secret as a plain str; declare it as SecretStr"
                )
        texts: dict[str, str] = {}
        with _captured_logs() as logs:
            for label, outcome in _exercise(payweave):
                texts[label] = outcome
        texts["account repr"] = repr(payweave.account)
        texts["account str"] = str(payweave.account)
        texts["settings repr"] = repr(settings)
        texts["settings str"] = str(settings)
        if settings is not None:
            texts["settings json"] = settings.model_dump_json()
        texts["environment repr"] = repr(payweave.env)
        out = capsys.readouterr()
        texts["stdout"], texts["stderr"] = out.out, out.err
        for index, line in enumerate(logs):
            texts[f"log line {index + 1}"] = line
        for secret in secrets:
            leaks = [label for label, text in texts.items() if secret in text]
            assert not leaks, f"a secret ({secret[:3]}…) appears in: {', '.join(leaks)}"


def _exercise(payweave: Harness) -> Iterator[tuple[str, str]]:
    """Run a few operations, good and bad; yield every result and error rendered as text."""
    capture = not payweave.declares(Feature.RESERVE)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("reserve", lambda: payweave.reserve("10.00", capture=capture)),
        ("declined reserve", lambda: payweave.reserve("10.00", capture=capture, token=payweave.env.decline_token())),
        ("invalid reserve", lambda: payweave.reserve("-1.00", capture=capture)),
        ("capabilities", lambda: payweave.psp.capabilities(payweave.account)),
    ]
    if payweave.declares(Feature.CAPTURE):
        calls.append(("capture of unknown", lambda: payweave.capture(payweave.unknown_reference(), "1.00")))
    if payweave.declares(Feature.WEBHOOKS):
        bad = WebhookRequest(headers={"content-type": "application/json"}, body=b'{"id": "x"}', received_at=datetime.now(UTC))
        calls.append(("unsigned webhook", lambda: payweave.psp.parse_webhook(payweave.account, bad)))
    if not payweave.declares(Feature.PAYOUTS):
        calls.append(("refused payouts", lambda: payweave.psp.list_payouts(payweave.account, None)))
    for label, call in calls:
        try:
            result = call()
        except PayweaveError as exc:
            yield f"{label} error", " ".join([repr(exc), str(exc), json.dumps(exc.to_dict(), default=str), repr(exc.__cause__)])
        except NotImplementedError:
            continue
        else:
            rendered = result.model_dump_json() if hasattr(result, "model_dump_json") else str(result)
            yield f"{label} result", f"{rendered} {result!r}"


@contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Capture structlog events (unfiltered, before any redaction) and stdlib log records."""
    lines: list[str] = []

    def capture(_logger: Any, _name: str, event: dict[str, Any]) -> Any:
        lines.append(repr(event))
        raise structlog.DropEvent

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                lines.append(f"{record.getMessage()} {record.args!r} {record.__dict__!r}")
            except Exception:  # a record whose message cannot be formatted still counts
                lines.append(repr(record.__dict__))

    old = structlog.get_config()
    structlog.configure(processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0), cache_logger_on_first_use=False)
    root = logging.getLogger()
    handler, old_level = Handler(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.configure(**old)


class TestCapabilities(_Suite):
    @conformance(contract=Contract.STABLE_CAPABILITIES)
    def test_capabilities_are_stable_and_backed_by_hooks(self, payweave: Harness) -> None:
        again = payweave.psp.capabilities(payweave.account)
        assert again == payweave.caps, "psp_capabilities must give the same answer for the same settings"
        record = payweave.manager.get(payweave.plugin)
        for feature in Feature:
            if payweave.declares(feature):
                missing = [hook for hook in FEATURE_HOOKS[feature] if hook not in record.hooks]
                assert not missing, f"declares {feature.value} but does not implement {', '.join(missing)}"

"""Idempotency keys and deterministic faults: a timeout after success must never move money
twice when the engine retries with the same key."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payweave.core.plugins import PspClient
from payweave.hooks.errors import InvalidRequest, NotSupported, PaymentDeclined, TemporarilyUnavailable
from payweave.hooks.models import Account, PaymentStatus
from payweave.plugins.psp_mock import Fault, MockLedger
from payweave.plugins.psp_mock.testing import capture_request, refund_request, reserve_request, void_request


def test_same_key_same_request_returns_the_first_result(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    request = reserve_request("10.00")
    first = psp.reserve(account, request)
    again = psp.reserve(account, request)
    assert again == first
    assert len(ledger.payments) == 1 and ledger.count("reserve") == 1
    capture = capture_request(first.psp_reference, "10.00")
    assert psp.capture(account, capture) == psp.capture(account, capture)
    assert ledger.count("capture") == 1 and ledger.payment(first.psp_reference).captured == Decimal("10.00")


def test_same_key_different_request_is_invalid(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "4.00", idempotency_key="cap-1", final=False))
    with pytest.raises(InvalidRequest) as info:
        psp.capture(account, capture_request(ref, "5.00", idempotency_key="cap-1", final=False))
    assert info.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidRequest):  # the key is per account, across operations
        psp.refund(account, refund_request(ref, "4.00", idempotency_key="cap-1"))
    assert ledger.payment(ref).captured == Decimal("4.00")


def test_declines_replay_and_refusals_do_not_stick(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    declined = reserve_request("10.00", payment_method_token="decline")
    for _ in range(2):
        with pytest.raises(PaymentDeclined):
            psp.reserve(account, declined)
    assert ledger.declines == 1, "the replay returns the stored decline; the PSP saw one attempt"
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(InvalidRequest):
        psp.capture(account, capture_request(ref, "11.00", idempotency_key="cap-x"))
    # a refused request is not stored: a corrected request may reuse the key
    psp.capture(account, capture_request(ref, "10.00", idempotency_key="cap-x"))


def test_timeout_after_applying_then_retry_moves_money_once(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    ledger.inject(Fault.TIMEOUT_AFTER, operation="capture")
    request = capture_request(ref, "10.00")
    with pytest.raises(TemporarilyUnavailable):
        psp.capture(account, request)
    assert ledger.payment(ref).captured == Decimal("10.00"), "the effect happened before the timeout"
    result = psp.capture(account, request)
    assert result.amount.amount == Decimal("10.00")
    assert ledger.count("capture") == 1
    # a careless retry with a new key is refused by the ledger, not captured twice
    with pytest.raises((InvalidRequest, NotSupported)):
        psp.capture(account, capture_request(ref, "10.00"))


def test_unavailable_before_applying(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ledger.inject("unavailable", operation="reserve", times=2)
    request = reserve_request("10.00")
    for _ in range(2):
        with pytest.raises(TemporarilyUnavailable):
            psp.reserve(account, request)
    assert ledger.payments == {}
    result = psp.reserve(account, request)
    assert result.status is PaymentStatus.RESERVED and len(ledger.payments) == 1


def test_decline_fault_and_queue_targeting(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    ledger.inject(Fault.DECLINE, operation="refund")
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference  # not targeted
    psp.capture(account, capture_request(ref, "10.00"))
    with pytest.raises(PaymentDeclined):
        psp.refund(account, refund_request(ref, "1.00"))
    assert ledger.payment(ref).refunded == 0 and ledger.pending_faults() == []
    ledger.inject(Fault.DECLINE)  # untargeted decline waits for a money-moving call
    psp.get_payment(account, ref)
    assert ledger.pending_faults() == [("decline", None)]


def test_fault_queue_order_and_refusal(psp: PspClient, make_account) -> None:  # noqa: ANN001
    from payweave.plugins.psp_mock import ledger_for

    account = make_account(profile="no_void")
    ledger = ledger_for(account)
    ledger.inject(Fault.UNAVAILABLE)
    with pytest.raises(NotSupported):
        psp.void(account, void_request("mpay_x"))
    assert ledger.pending_faults() == [("unavailable", None)], "a refused call never reaches the PSP"
    with pytest.raises(TemporarilyUnavailable):
        psp.reserve(account, reserve_request("1.00"))
    assert ledger.pending_faults() == []


def test_metadata_fault_applies_to_this_call_only(psp: PspClient, account: Account, ledger: MockLedger) -> None:
    request = reserve_request("10.00", metadata={"psp_mock_fault": "timeout_after"})
    with pytest.raises(TemporarilyUnavailable):
        psp.reserve(account, request)
    first = next(iter(ledger.payments.values()))
    assert psp.reserve(account, request).psp_reference == first.reference
    assert len(ledger.payments) == 1


def test_inject_validates_its_arguments(ledger: MockLedger) -> None:
    with pytest.raises(ValueError):
        ledger.inject("explode")
    with pytest.raises(ValueError):
        ledger.inject(Fault.TIMEOUT_AFTER, operation="teleport")
    with pytest.raises(ValueError):
        ledger.inject(Fault.DECLINE, operation="get_payment")

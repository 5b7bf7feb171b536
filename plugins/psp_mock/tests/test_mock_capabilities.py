"""Each capability: honoured when declared, refused with NotSupported (before the ledger sees
the call) when not. Capabilities come from the account's settings (profile + overrides)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from payweave.core.plugins import PspClient
from payweave.hooks.capabilities import CaptureMode, Feature, RefundSupport, VoidSupport
from payweave.hooks.errors import ConfigurationError, NotSupported
from payweave.hooks.models import (
    Account,
    CartUpdateRequest,
    MandateChargeRequest,
    PaymentLinkRequest,
    RenewReservationRequest,
    WebhookRequest,
)
from payweave.plugins.psp_mock import PROFILES, MockPspSettings, ledger_for
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


# ---------------------------------------------------------------- settings -> capabilities
def test_default_is_full_featured(psp: PspClient, account: Account) -> None:
    caps = psp.capabilities(account)
    assert all(caps.matrix().values()), caps.matrix()
    assert caps.reservation_validity == timedelta(days=7)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_is_a_valid_capability_model(psp: PspClient, make_account: Callable[..., Account], profile: str) -> None:
    caps = psp.capabilities(make_account(profile=profile))
    for name, value in PROFILES[profile].items():
        assert getattr(caps, name) == value


def test_profiles_differ_where_named(psp: PspClient, make_account: Callable[..., Account]) -> None:
    def matrix(profile: str) -> dict[str, bool]:
        return psp.capabilities(make_account(profile=profile)).matrix()

    assert not matrix("no_partial_capture")["partial_capture"] and not matrix("no_partial_capture")["multiple_captures"]
    assert not matrix("no_void")["void"]
    assert not matrix("no_partial_refund")["partial_refund"] and matrix("no_partial_refund")["refund"]
    assert matrix("no_cart_update_after_reservation")["cart_update_before_reservation"]
    assert not matrix("no_cart_update_after_reservation")["cart_update_while_reserved"]
    auto = matrix("auto_capture")
    assert auto["auto_capture"] and not auto["reserve"] and not auto["void"]
    assert [f for f, on in matrix("minimal").items() if on] == ["reserve", "capture"]


def test_overrides_win_over_the_profile(psp: PspClient, make_account: Callable[..., Account]) -> None:
    caps = psp.capabilities(make_account(profile="minimal", refund="partial", capture_modes="manual,automatic"))
    assert caps.refund is RefundSupport.PARTIAL
    assert caps.capture_modes == {CaptureMode.MANUAL, CaptureMode.AUTOMATIC}
    assert psp.capabilities(make_account(reservation_validity_seconds=0)).reservation_validity is None


def test_environment_selects_profile_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWEAVE_PSP_MOCK_PROFILE", "no_void")
    monkeypatch.setenv("PAYWEAVE_PSP_MOCK_CART_UPDATE", "before_reservation")
    monkeypatch.setenv("PAYWEAVE_PSP_MOCK_CURRENCIES", '["eur", "jpy"]')
    caps = MockPspSettings().capabilities()
    assert caps.void is VoidSupport.NONE
    assert not caps.declares(Feature.CART_UPDATE_WHILE_RESERVED)
    assert caps.currencies == {"EUR", "JPY"}


def test_inconsistent_overrides_are_a_configuration_error(manager) -> None:  # noqa: ANN001
    with pytest.raises(ConfigurationError):
        manager.account("psp_mock", "bad", profile="auto_capture", void="full")
    with pytest.raises(ValueError, match="void needs a manual capture mode"):
        MockPspSettings(profile="auto_capture", void="full")


# ---------------------------------------------------------------- refusal, per feature
def _attempt(feature: Feature, psp: PspClient, account: Account) -> None:
    """Call the operation that needs ``feature`` with an otherwise valid request."""
    ref = "mpay_unknown"
    if feature is Feature.RESERVE:
        psp.reserve(account, reserve_request("10.00"))
    elif feature is Feature.AUTO_CAPTURE:
        psp.reserve(account, reserve_request("10.00", capture=True))
    elif feature is Feature.NO_CART:
        psp.reserve(account, reserve_request("10.00", cart=False))
    elif feature in (Feature.CAPTURE, Feature.PARTIAL_CAPTURE, Feature.MULTIPLE_CAPTURES):
        psp.capture(account, capture_request(ref, "1.00"))
    elif feature in (Feature.VOID, Feature.PARTIAL_VOID):
        psp.void(account, void_request(ref))
    elif feature in (Feature.REFUND, Feature.PARTIAL_REFUND):
        psp.refund(account, refund_request(ref, "1.00"))
    elif feature is Feature.CREDIT:
        psp.credit(account, credit_request(None, "1.00", customer=CUSTOMER))
    elif feature is Feature.CART_UPDATE_BEFORE_RESERVATION:
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="before_reservation", cart=cart_of("5.00")))
    elif feature is Feature.CART_UPDATE_WHILE_RESERVED:
        psp.update_cart(account, CartUpdateRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, stage="while_reserved", cart=cart_of("5.00")))
    elif feature is Feature.RECURRING:
        psp.charge_mandate(account, MandateChargeRequest(idempotency_key=key(), transaction_id="t", mandate_reference="mmd_x", customer=CUSTOMER, amount=money("5.00")))
    elif feature is Feature.RESERVATION_RENEWAL:
        psp.renew_reservation(account, RenewReservationRequest(idempotency_key=key(), transaction_id="t", psp_reference=ref, amount=money("5.00")))
    elif feature is Feature.PAY_BY_LINK:
        psp.create_payment_link(account, PaymentLinkRequest(idempotency_key=key(), transaction_id="t", amount=money("5.00"), cart=cart_of("5.00"), success_url="https://shop.example/ok", error_url="https://shop.example/err", cancel_url="https://shop.example/cancel"))
    elif feature is Feature.WEBHOOKS:
        psp.parse_webhook(account, WebhookRequest(headers={}, body=b"{}", received_at=datetime.now(UTC)))
    elif feature is Feature.PAYOUTS:
        psp.list_payouts(account, None)
    elif feature is Feature.PAYMENT_LOOKUP:
        psp.get_payment(account, ref)
    else:  # pragma: no cover - a new Feature needs a line here
        raise AssertionError(f"no attempt defined for {feature}")


# features whose refusal depends on state (a partial amount, a second capture): tested below
_STATEFUL = {Feature.PARTIAL_CAPTURE, Feature.MULTIPLE_CAPTURES, Feature.PARTIAL_VOID, Feature.PARTIAL_REFUND}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_undeclared_feature_is_refused_before_the_ledger(psp: PspClient, make_account, profile: str) -> None:  # noqa: ANN001
    account = make_account(profile=profile)
    caps = psp.capabilities(account)
    refused = [f for f in Feature if not caps.declares(f) and f not in _STATEFUL]
    for feature in refused:
        with pytest.raises(NotSupported) as info:
            _attempt(feature, psp, account)
        assert info.value.details.get("feature") in {feature.value, *(f.value for f in refused)}, feature
    assert ledger_for(account).requests == []


def test_partial_capture_refused_without_the_capability(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(profile="no_partial_capture")
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(NotSupported) as info:
        psp.capture(account, capture_request(ref, "4.00"))
    assert info.value.details["feature"] == "partial_capture"
    assert ledger_for(account).payment(ref).captured == 0
    psp.capture(account, capture_request(ref, "10.00"))
    assert ledger_for(account).payment(ref).captured == money("10.00").amount


def test_second_capture_needs_manual_multiple(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(capture_modes="manual")  # partial yes, one capture only
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    result = psp.capture(account, capture_request(ref, "4.00", final=False))
    assert result.released == money("6.00"), "a single-capture PSP releases the rest at once"
    ledger = ledger_for(account)
    assert ledger.payment(ref).remaining == 0
    with pytest.raises(NotSupported) as info:
        psp.capture(account, capture_request(ref, "1.00"))
    assert info.value.details["feature"] == "multiple_captures"


def test_partial_void_refused_with_full_void_only(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(profile="no_partial_refund")  # void=full
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    with pytest.raises(NotSupported) as info:
        psp.void(account, void_request(ref, "3.00"))
    assert info.value.details["feature"] == "partial_void"
    psp.void(account, void_request(ref))
    assert ledger_for(account).payment(ref).status.value == "voided"


def test_partial_refund_refused_with_full_only(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(profile="no_partial_refund")
    ref = psp.reserve(account, reserve_request("10.00")).psp_reference
    psp.capture(account, capture_request(ref, "10.00"))
    with pytest.raises(NotSupported) as info:
        psp.refund(account, refund_request(ref, "2.50"))
    assert info.value.details["feature"] == "partial_refund"
    psp.refund(account, refund_request(ref, "10.00"))
    assert ledger_for(account).payment(ref).refunded == money("10.00").amount


def test_currency_outside_the_declared_list_is_refused(psp: PspClient, make_account) -> None:  # noqa: ANN001
    account = make_account(currencies="EUR")
    with pytest.raises(NotSupported) as info:
        psp.reserve(account, reserve_request("10", "JPY"))
    assert info.value.code == "currency_not_supported"

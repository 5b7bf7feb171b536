"""The capability model: graded fields, consistency rules, derived features, the refusal rule."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from payweave.hooks import hookspecs
from payweave.hooks.capabilities import (
    CaptureMode,
    CartUpdateStage,
    Feature,
    PspCapabilities,
    RefundSupport,
    RenewalStyle,
    VoidSupport,
)
from payweave.hooks.errors import NotSupported, PayweaveError


def test_defaults_declare_only_reservation_and_capture():
    caps = PspCapabilities()
    declared = {f for f in Feature if caps.declares(f)}
    assert declared == {Feature.RESERVE, Feature.CAPTURE}


def test_graded_values():
    caps = PspCapabilities(refund="full_only", void="full", capture_modes=["manual"])
    assert caps.declares(Feature.REFUND) and not caps.declares(Feature.PARTIAL_REFUND)
    assert caps.declares(Feature.VOID) and not caps.declares(Feature.PARTIAL_VOID)
    caps = PspCapabilities(refund="partial", void="partial", capture_modes=["manual", "manual_multiple"], partial_capture=True)
    assert caps.declares(Feature.PARTIAL_REFUND) and caps.declares(Feature.PARTIAL_VOID)
    assert caps.declares(Feature.MULTIPLE_CAPTURES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capture_modes": []}, "at least one capture mode"),
        ({"capture_modes": ["manual", "manual_multiple"]}, "needs partial_capture=True"),
        ({"capture_modes": ["automatic"], "partial_capture": True}, "partial_capture needs a manual capture mode"),
        ({"capture_modes": ["automatic"], "void": "full"}, "void needs a manual capture mode"),
        ({"capture_modes": ["automatic"], "reservation_renewal": "reauthorize"}, "reservation_renewal needs"),
        ({"reservation_validity": timedelta(0)}, "must be positive"),
        ({"currencies": ["EUR", "XXX"]}, "no minor unit"),
        ({"refund": "sometimes"}, "Input should be"),
        ({"teleport": True}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_models_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        PspCapabilities(**kwargs)


def test_require_raises_not_supported_naming_the_feature():
    caps = PspCapabilities(refund="full_only")
    caps.require(Feature.REFUND, psp="AcmePay")
    with pytest.raises(NotSupported) as excinfo:
        caps.require(Feature.PARTIAL_REFUND, psp="AcmePay")
    assert excinfo.value.message == "AcmePay does not support partial refunds."
    assert excinfo.value.code == "not_supported"
    assert excinfo.value.details == {"feature": "partial_refund", "psp": "AcmePay"}


def test_currency_restriction():
    caps = PspCapabilities(currencies=["eur", "JPY"])
    assert caps.currencies == frozenset({"EUR", "JPY"})
    caps.require_currency("jpy")
    with pytest.raises(NotSupported) as excinfo:
        caps.require_currency("USD", psp="AcmePay")
    assert excinfo.value.code == "currency_not_supported"
    with pytest.raises(PayweaveError):
        caps.require_currency("EURO")


def test_matrix_lists_every_feature_in_order():
    matrix = PspCapabilities(pay_by_link=True).matrix()
    assert list(matrix) == [f.value for f in Feature]
    assert matrix["pay_by_link"] is True and matrix["credit"] is False


def test_every_feature_names_existing_hooks():
    spec_names = {n for n in dir(hookspecs) if n.startswith(("psp_", "erp_", "payweave_"))}
    for feature, hooks in hookspecs.FEATURE_HOOKS.items():
        assert hooks, feature
        assert set(hooks) <= spec_names, feature
    assert set(hookspecs.PSP_REQUIRED_HOOKS) <= spec_names
    assert set(hookspecs.ERP_REQUIRED_HOOKS) <= spec_names


capability_kwargs = st.fixed_dictionaries(
    {
        "capture_modes": st.sets(st.sampled_from(list(CaptureMode)), min_size=1),
        "partial_capture": st.booleans(),
        "refund": st.sampled_from(list(RefundSupport)),
        "void": st.sampled_from(list(VoidSupport)),
        "cart_update": st.sets(st.sampled_from(list(CartUpdateStage))),
        "reservation_renewal": st.sampled_from(list(RenewalStyle)),
        "credit": st.booleans(),
        "no_cart": st.booleans(),
    }
)


@given(capability_kwargs)
def test_valid_models_have_consistent_features(kwargs):
    try:
        caps = PspCapabilities(**kwargs)
    except ValidationError:
        return
    # graded features imply their base feature
    if caps.declares(Feature.PARTIAL_REFUND):
        assert caps.declares(Feature.REFUND)
    if caps.declares(Feature.PARTIAL_VOID):
        assert caps.declares(Feature.VOID)
    if caps.declares(Feature.MULTIPLE_CAPTURES):
        assert caps.declares(Feature.PARTIAL_CAPTURE)
    if caps.declares(Feature.PARTIAL_CAPTURE) or caps.declares(Feature.VOID):
        assert caps.declares(Feature.CAPTURE)
    # the model round-trips through JSON (the API and CLI expose it)
    assert PspCapabilities.model_validate_json(caps.model_dump_json()) == caps

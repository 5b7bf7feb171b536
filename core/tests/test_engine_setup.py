"""Payment-method setup: validated when saved; forbidden combinations and options the PSP cannot
serve are refused with an error naming the settings."""
from __future__ import annotations

import pytest

from payweave.core.engine import PaymentMethodSetup
from payweave.core.engine.setup import SETTING_TITLES
from payweave.core.errors import (
    PaymentMethodNotFound,
    SetupCombinationForbidden,
    SetupIncomplete,
    SetupOptionNotSupported,
)
from payweave.core.plugins import UnknownPlugin
from payweave.hooks.capabilities import Feature

URLS = {"success_url": "https://shop.example/ok", "error_url": "https://shop.example/err", "cancel_url": "https://shop.example/cancel"}


def setup(profile: str = "full", **options) -> PaymentMethodSetup:
    return PaymentMethodSetup(company_id="CRONUS", code="CARD", psp="psp_mock", psp_account=profile, **options)


@pytest.mark.parametrize(
    ("a", "b", "extra"),
    [
        ("recurring", "allow_reservation_renewal", {}),
        ("recurring", "advanced_import", {}),
        ("allow_reservation_renewal", "advanced_import", {}),
        ("without_cart", "allow_cart_update", {}),
        ("without_cart", "recurring", {}),
        ("auto_capture", "late_capture", {}),
        ("auto_capture", "auto_void", {}),
        ("auto_capture", "allow_reservation_renewal", {}),
    ],
)
def test_forbidden_combinations_name_both_settings(engine, a, b, extra):
    with pytest.raises(SetupCombinationForbidden) as err:
        engine.save_payment_method(setup(**{a: True, b: True}, **extra))
    assert SETTING_TITLES[a] in err.value.message and SETTING_TITLES[b] in err.value.message
    assert err.value.details["settings"] == [a, b]
    assert err.value.code == "setup_combination_forbidden"
    with pytest.raises(PaymentMethodNotFound):  # nothing was stored
        engine.get_payment_method("CRONUS", "CARD")


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"without_cart": True, "refund_timing": "on_posting"}, ("Without Cart", "Refund Timing")),
        ({"without_cart": True, "refund_timing": "job_queue"}, ("Without Cart", "Refund Timing")),
        ({"auto_capture": True, "capture_timing": "on_posting"}, ("AutoCapture", "Capture Timing")),
    ],
)
def test_forbidden_combinations_with_timings(engine, options, names):
    with pytest.raises(SetupCombinationForbidden) as err:
        engine.save_payment_method(setup(**options))
    for name in names:
        assert name in err.value.message


def test_each_allowed_pair_is_accepted(engine):
    saved = engine.save_payment_method(
        setup(recurring=True, credit_allowed=True, auto_void=True, late_capture=True, allow_cart_update=True,
              start_payment=True, capture_timing="job_queue", refund_timing="on_posting", **URLS)
    )
    assert engine.get_payment_method("CRONUS", "card") == saved
    assert [m.code for m in engine.list_payment_methods("CRONUS")] == ["CARD"]


@pytest.mark.parametrize(
    ("profile", "options", "setting", "feature"),
    [
        ("minimal", {"auto_capture": True}, "auto_capture", "auto_capture"),
        ("auto_capture", {}, "auto_capture", "reserve"),
        ("no_void", {"auto_void": True}, "auto_void", "void"),
        ("minimal", {"credit_allowed": True}, "credit_allowed", "credit"),
        ("minimal", {"start_payment": True, **URLS}, "start_payment", "pay_by_link"),
        ("minimal", {"recurring": True}, "recurring", "recurring"),
        ("minimal", {"allow_cart_update": True}, "allow_cart_update", "cart_update_while_reserved"),
        ("minimal", {"allow_reservation_renewal": True}, "allow_reservation_renewal", "reservation_renewal"),
        ("minimal", {"without_cart": True}, "without_cart", "no_cart"),
        ("minimal", {"advanced_import": True}, "advanced_import", "payment_lookup"),
        ("minimal", {"refund_timing": "on_posting"}, "refund_timing", "refund"),
    ],
)
def test_options_the_psp_cannot_serve_are_refused(engine, profile, options, setting, feature):
    with pytest.raises(SetupOptionNotSupported) as err:
        engine.save_payment_method(setup(profile, **options))
    assert SETTING_TITLES[setting] in err.value.message
    assert err.value.details["setting"] == setting
    assert err.value.details["feature"] == feature
    assert "psp_mock" in err.value.message
    assert err.value.code == "setup_option_not_supported"


def test_cart_update_is_allowed_when_the_psp_updates_only_before_reservation(engine):
    engine.save_payment_method(setup("no_cart_update_after_reservation", allow_cart_update=True))


def test_refunds_by_credit_alone_are_allowed(engine):
    """A PSP without refunds but with credits serves refund timings only when credits are allowed."""
    caps = engine.capabilities("psp_mock", "credit_only")
    assert caps.declares(Feature.CREDIT) and not caps.declares(Feature.REFUND)
    with pytest.raises(SetupOptionNotSupported) as err:
        engine.save_payment_method(setup("credit_only", refund_timing="job_queue"))
    assert "Refund Timing" in err.value.message
    engine.save_payment_method(setup("credit_only", refund_timing="job_queue", credit_allowed=True))


def test_start_payment_needs_all_three_urls(engine):
    with pytest.raises(SetupIncomplete) as err:
        engine.save_payment_method(setup(start_payment=True, success_url="https://x.example/ok"))
    assert "Start Payment" in err.value.message and "Error URL" in err.value.message


def test_unknown_psp_is_refused(engine):
    with pytest.raises(UnknownPlugin):
        engine.save_payment_method(PaymentMethodSetup(company_id="CRONUS", code="X", psp="psp_nope"))


def test_setup_is_scoped_per_company(engine):
    engine.save_payment_method(setup())
    with pytest.raises(PaymentMethodNotFound):
        engine.get_payment_method("OTHER", "CARD")
    assert engine.list_payment_methods("OTHER") == []
    engine.delete_payment_method("CRONUS", "CARD")
    with pytest.raises(PaymentMethodNotFound):
        engine.delete_payment_method("CRONUS", "CARD")


def test_saving_again_replaces_the_line(engine):
    engine.save_payment_method(setup(capture_timing="on_release"))
    engine.save_payment_method(setup(capture_timing="on_posting", auto_void=True))
    saved = engine.get_payment_method("CRONUS", "CARD")
    assert saved.capture_timing.value == "on_posting" and saved.auto_void

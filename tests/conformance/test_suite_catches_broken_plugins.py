"""The suite must be able to fail: each deliberately broken plugin (tests/fixtures/broken_plugins)
fails on the test that proves the property it breaks, and only there."""
from __future__ import annotations

from pathlib import Path

import pytest

from payweave.core.conformance.report import FAILED, PASSED, PROVEN
from payweave.core.conformance.runner import run_conformance
from payweave.hooks.capabilities import Feature

CASES = [
    pytest.param(
        "broken_refunds_everything",
        {"TestRefund::test_partial_refunds"},
        {"TestIdempotency::test_idempotent_refund"},
        "refunded",
        id="claims-partial-refund-refunds-everything",
    ),
    pytest.param(
        "broken_ignores_idempotency",
        {"TestIdempotency::test_idempotent_reserve", "TestIdempotency::test_idempotent_capture"},
        {"TestIdempotency::test_idempotent_refund"},
        "idempotency key",
        id="ignores-idempotency-keys",
    ),
    pytest.param(
        "broken_bare_decline",
        {"TestTypedErrors::test_decline_is_a_typed_error"},
        set(),
        "PluginBug",
        id="bare-exception-on-decline",
    ),
    pytest.param(
        "broken_rounds_jpy",
        {"TestCurrencyPrecision::test_amounts_in_currency_precision[JPY]"},
        set(),
        "123500",
        id="rounds-jpy-wrongly",
    ),
]


@pytest.mark.parametrize(("plugin", "must_fail", "may_fail", "reason_mentions"), CASES)
def test_suite_fails_the_broken_plugin_on_the_right_test(
    broken_plugins: Path, plugin: str, must_fail: set[str], may_fail: set[str], reason_mentions: str
) -> None:
    report = run_conformance(plugin)
    assert report.exit_code == 1 and not report.ok
    failed = {nodeid.split("::", 1)[1] for nodeid in report.failed_tests()}
    assert must_fail <= failed, f"the suite missed the defect: failed only {sorted(failed)}"
    assert failed <= must_fail | may_fail, f"unrelated failures: {sorted(failed - must_fail - may_fail)}"
    reasons = " ".join(report.test(name).reason or "" for name in must_fail)
    assert reason_mentions in reasons, reasons
    # everything the defect does not touch is still proven
    untouched = [f for f in report.features if f.status != FAILED]
    assert all(f.status in (PROVEN, "refused") for f in untouched), [(f.feature, f.status) for f in untouched]


def test_partial_refund_defect_is_reported_on_its_capability(broken_plugins: Path) -> None:
    report = run_conformance("broken_refunds_everything")
    assert report.feature(Feature.PARTIAL_REFUND).status == FAILED
    assert "test_partial_refunds" in (report.feature(Feature.PARTIAL_REFUND).reason or "")
    assert report.feature(Feature.REFUND).status == PROVEN


def test_precision_defect_is_specific_to_jpy(broken_plugins: Path) -> None:
    report = run_conformance("broken_rounds_jpy", pytest_args=["-k", "precision"])
    outcomes = {t.nodeid.rsplit("[", 1)[1].rstrip("]"): t.outcome for t in report.tests if "precision" in t.nodeid}
    assert outcomes == {"JPY": FAILED, "EUR": PASSED, "KWD": PASSED}
    assert report.contract("currency_precision").status == FAILED


def test_strict_mode_does_not_hide_a_defect(broken_plugins: Path) -> None:
    report = run_conformance("broken_bare_decline", strict=True)
    assert not report.ok and report.contract("typed_errors").status == FAILED


def test_an_unknown_plugin_is_a_clear_failure() -> None:
    report = run_conformance("no_such_plugin_anywhere")
    assert not report.ok and report.exit_code != 0
    assert report.error and "no_such_plugin_anywhere" in report.error

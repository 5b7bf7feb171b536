"""Strict mode (Airbyte's bypass_reason): an applicable test may be skipped only with a
written reason; skips closed by the capability model are never a problem."""
from __future__ import annotations

from pathlib import Path

from payweave.core.conformance.report import FAILED, SKIPPED
from payweave.core.conformance.runner import run_conformance
from payweave.hooks.capabilities import Feature


def _reasons(report, feature: Feature) -> str:  # noqa: ANN001
    return report.feature(feature).reason or ""


def test_without_strict_an_environment_gap_is_a_visible_skip(broken_plugins: Path) -> None:
    report = run_conformance("limited_env")
    assert report.ok
    for feature in (Feature.PAY_BY_LINK, Feature.RECURRING):
        assert report.feature(feature).status == SKIPPED
        assert "cannot" in _reasons(report, feature)
    assert report.test("test_mandate_charge").skip_kind == "environment"


def test_strict_fails_a_skip_without_written_reason(broken_plugins: Path) -> None:
    report = run_conformance("limited_env", strict=True)
    assert not report.ok and report.exit_code == 1
    assert {n.split("::", 1)[1] for n in report.failed_tests()} == {
        "TestPayByLink::test_payment_link",
        "TestRecurring::test_mandate_charge",
    }
    assert report.feature(Feature.PAY_BY_LINK).status == FAILED
    assert "strict mode" in _reasons(report, Feature.RECURRING)


def test_strict_accepts_written_reasons(broken_plugins: Path) -> None:
    from payweave_conformance_fixtures.limited_env_reasons import LINK_REASON, MANDATE_REASON

    report = run_conformance("limited_env_reasons", strict=True)
    assert report.ok, report.failed_tests()
    assert report.feature(Feature.PAY_BY_LINK).status == SKIPPED
    assert LINK_REASON in _reasons(report, Feature.PAY_BY_LINK)
    assert MANDATE_REASON in _reasons(report, Feature.RECURRING)
    assert report.test("test_payment_link").skip_kind == "written"
    assert report.test("test_mandate_charge").skip_kind == "written"


def test_capability_skips_never_need_a_reason() -> None:
    report = run_conformance("psp_mock", settings={"profile": "minimal"}, strict=True)
    assert report.ok, report.failed_tests()
    closed = [t for t in report.tests if t.outcome == SKIPPED]
    assert closed and all(t.skip_kind == "not_applicable" for t in closed)


def test_a_reason_for_an_undeclared_feature_does_not_skip_its_refusal(broken_plugins: Path) -> None:
    """limited_env_reasons writes a reason under "pay_by_link"; with pay_by_link undeclared the
    refusal test must still run (the reason is shown as a note)."""
    report = run_conformance("limited_env_reasons", settings={"pay_by_link": False}, strict=True)
    assert report.ok, report.failed_tests()
    assert report.test("test_refuses[pay_by_link]").outcome == "passed"
    assert report.feature(Feature.PAY_BY_LINK).status == "refused"
    assert report.feature(Feature.PAY_BY_LINK).note

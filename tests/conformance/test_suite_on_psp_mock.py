"""CI: the conformance suite against psp_mock in several capability profiles.

The expected verdict per capability is computed from the profile's own capability model:
declared -> proven, not declared -> refused (never a hand-kept table)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from payweave.core.conformance.report import PASSED, PROVEN, REFUSED
from payweave.core.conformance.runner import run_conformance
from payweave.hooks.capabilities import Feature
from payweave.plugins.psp_mock import PROFILES, MockPspSettings


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_psp_mock_conforms_in_every_profile(profile: str, tmp_path: Path) -> None:
    report = run_conformance("psp_mock", settings={"profile": profile}, strict=True, json_path=tmp_path / "report.json")
    assert report.ok, (report.failed_tests(), [(f.feature, f.status, f.reason) for f in report.features])
    assert report.exit_code == 0
    caps = MockPspSettings(profile=profile).capabilities()
    assert report.capabilities == json.loads(caps.model_dump_json())
    for feature in Feature:
        status = report.feature(feature)
        assert status.declared == caps.declares(feature)
        assert status.status == (PROVEN if caps.declares(feature) else REFUSED), (feature, status)
        assert status.tests, f"no test decided {feature.value}"
    assert all(c.status == PASSED for c in report.contracts), report.contracts
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] is True and data["settings"] == {"profile": profile}
    assert [f["feature"] for f in data["features"]] == [f.value for f in Feature]


def test_overrides_reach_the_plugin(tmp_path: Path) -> None:
    """A per-field override changes what is proven and what must be refused."""
    report = run_conformance("psp_mock", settings={"profile": "full", "refund": "full_only", "credit": False})
    assert report.ok, report.failed_tests()
    assert report.feature(Feature.REFUND).status == PROVEN
    assert report.feature(Feature.PARTIAL_REFUND).status == REFUSED
    assert report.feature(Feature.CREDIT).status == REFUSED
    assert report.test("test_refuses[partial_refund]").outcome == "passed"


def test_a_refusal_that_does_not_refuse_fails(tmp_path: Path) -> None:
    """psp_mock told that partial captures are not declared, but a test double accepting them
    would be caught: here we check the suite's refusal test runs and its verdict is recorded."""
    report = run_conformance("psp_mock", settings={"profile": "no_partial_capture"}, pytest_args=["-k", "partial_capture"])
    refusal = report.test("test_refuses[partial_capture]")
    assert refusal.outcome == "passed" and refusal.kind == "refusal"
    assert report.test("test_partial_capture").outcome == "skipped"
    assert report.test("test_partial_capture").skip_kind == "not_applicable"

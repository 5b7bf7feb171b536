"""CI: the conformance suite against psp_stripe_like and its Stripe-shaped sandbox (started on
loopback by the plugin's own conformance environment), in strict mode: every skip it makes
must carry a written reason."""
from __future__ import annotations

import pytest

from payweave.core.conformance.report import FAILED
from payweave.core.conformance.runner import run_conformance
from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.hooks.capabilities import Feature

PLUGIN = "psp_stripe_like"


def _not_ready() -> str | None:
    manager = PluginManager(PayweaveSettings(plugins=PLUGIN))
    manager.load_entrypoints()
    record = next((r for r in manager.plugins() if r.name == PLUGIN), None)
    if record is None or record.status != "active":
        return f"{PLUGIN} does not load yet: {record.error.message if record and record.error else 'not installed'}"
    if "payweave_conformance_environment" not in record.hooks:
        return f"{PLUGIN} has no payweave_conformance_environment hook yet"
    return None


@pytest.mark.slow
def test_psp_stripe_like_conforms_against_its_sandbox() -> None:
    reason = _not_ready()
    if reason:
        pytest.skip(reason)
    report = run_conformance(PLUGIN, strict=True)
    failures = [(f.feature, f.reason) for f in report.features if f.status == FAILED]
    failures += [(c.contract, c.reason) for c in report.contracts if c.status == FAILED]
    assert report.ok, (report.error, failures, report.failed_tests())
    assert sum(1 for f in Feature if report.feature(f).status in ("proven", "refused")) == len(Feature), [
        (f.feature, f.status, f.reason) for f in report.features
    ]

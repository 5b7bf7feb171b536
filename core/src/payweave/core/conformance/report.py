"""The conformance report: per test, per capability, per contract; JSON for CI and a Rich table.

A capability's status:

* ``proven``: declared, and every open test proving it passed (at least one ran);
* ``refused``: not declared, and the plugin refused it with ``NotSupported``;
* ``failed``: a test proving it, or its refusal test, failed (or errored);
* ``skipped``: nothing could run; the reason is shown (strict mode accepts only written ones);
* ``not run``: deselected (``-k``) or the session stopped early.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from payweave.hooks.capabilities import Feature, PspCapabilities

from .requirements import Contract, Kind

PROVEN, REFUSED, FAILED, SKIPPED, NOT_RUN, PASSED = "proven", "refused", "failed", "skipped", "not run", "passed"


@dataclass
class TestOutcome:
    nodeid: str
    kind: str
    features: list[str]
    contract: str | None
    needs: list[str] = field(default_factory=list)
    outcome: str = NOT_RUN  # passed | failed | skipped | not run
    reason: str | None = None
    skip_kind: str | None = None  # not_applicable | written | environment
    duration: float = 0.0

    __test__ = False  # not a pytest test class


@dataclass
class CapabilityStatus:
    feature: str
    title: str
    declared: bool
    status: str
    reason: str | None
    tests: list[str]
    note: str | None = None


@dataclass
class ContractStatus:
    contract: str
    title: str
    status: str
    reason: str | None
    tests: list[str]


@dataclass
class ConformanceReport:
    plugin: str
    distribution: str = ""
    version: str = ""
    strict: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] | None = None
    tests: list[TestOutcome] = field(default_factory=list)
    features: list[CapabilityStatus] = field(default_factory=list)
    contracts: list[ContractStatus] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and self.error is None
            and not any(f.status == FAILED for f in self.features)
            and not any(c.status == FAILED for c in self.contracts)
        )

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0, "not run": 0}
        for t in self.tests:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
        return counts

    def feature(self, name: str | Feature) -> CapabilityStatus:
        return next(f for f in self.features if f.feature == str(name))

    def contract(self, name: str | Contract) -> ContractStatus:
        return next(c for c in self.contracts if c.contract == str(name))

    def test(self, fragment: str) -> TestOutcome:
        """The one test whose node id contains ``fragment``."""
        found = [t for t in self.tests if fragment in t.nodeid]
        if len(found) != 1:
            raise KeyError(f"{len(found)} tests match {fragment!r}: {[t.nodeid for t in found]}")
        return found[0]

    def failed_tests(self) -> list[str]:
        return [t.nodeid for t in self.tests if t.outcome == FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "strict": self.strict,
            "settings": self.settings,
            "capabilities": self.capabilities,
            "features": [asdict(f) for f in self.features],
            "contracts": [asdict(c) for c in self.contracts],
            "tests": [asdict(t) for t in self.tests],
            "summary": self.counts(),
            "error": self.error,
            "exit_code": self.exit_code,
            "ok": self.ok,
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")

    # ------------------------------------------------------------------ building
    def summarize(self, caps: PspCapabilities | None, notes: dict[str, str] | None = None) -> None:
        """Fill :attr:`features` (in :class:`Feature` order) and :attr:`contracts` from the tests."""
        notes = notes or {}
        self.features = []
        for feature in Feature:
            declared = caps.declares(feature) if caps is not None else False
            kind = Kind.PROOF.value if declared else Kind.REFUSAL.value
            tests = [t for t in self.tests if t.kind == kind and feature.value in t.features]
            status, reason = _combine(tests, success=PROVEN if declared else REFUSED)
            self.features.append(
                CapabilityStatus(
                    feature=feature.value, title=feature.title, declared=declared, status=status, reason=reason,
                    tests=[t.nodeid for t in tests],
                    note=None if declared else notes.get(feature.value),
                )
            )
        self.contracts = []
        for contract in Contract:
            tests = [t for t in self.tests if t.kind == Kind.CONTRACT.value and t.contract == contract.value]
            status, reason = _combine(tests, success=PASSED)
            self.contracts.append(ContractStatus(contract.value, contract.title, status, reason, [t.nodeid for t in tests]))


def _combine(tests: list[TestOutcome], *, success: str) -> tuple[str, str | None]:
    failed = [t for t in tests if t.outcome == FAILED]
    if failed:
        return FAILED, "; ".join(f"{_short(t.nodeid)}: {t.reason or 'failed'}" for t in failed)
    applicable = [t for t in tests if t.skip_kind != "not_applicable"]
    ran = [t for t in applicable if t.outcome == PASSED]
    skipped = [t for t in applicable if t.outcome == SKIPPED]
    if ran:
        if skipped:
            return success, "; ".join(f"skipped {_short(t.nodeid)}: {t.reason}" for t in skipped)
        return success, None
    if skipped:
        return SKIPPED, "; ".join(dict.fromkeys(t.reason or "skipped" for t in skipped))
    if applicable or not tests:
        return NOT_RUN, None
    return NOT_RUN, "; ".join(dict.fromkeys(t.reason or "" for t in tests))


def _short(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1]


_STYLE = {
    PROVEN: "[green]proven[/]",
    REFUSED: "[green]refused correctly[/]",
    PASSED: "[green]passed[/]",
    FAILED: "[bold red]FAILED[/]",
    SKIPPED: "[yellow]skipped[/]",
    NOT_RUN: "[dim]not run[/]",
}


def render(report: ConformanceReport, console: Console) -> None:
    """Print the per-capability and per-contract tables and the verdict."""
    title = f"Conformance of {report.plugin}"
    if report.version:
        title += f" ({report.distribution} {report.version})"
    if report.settings:
        title += " with " + ", ".join(f"{k}={v}" for k, v in report.settings.items())
    if report.strict:
        title += " [strict]"
    table = Table(title=title, show_lines=False)
    table.add_column("capability")
    table.add_column("declared", justify="center")
    table.add_column("result")
    table.add_column("reason / detail", overflow="fold")
    for f in report.features:
        detail = f.reason or f.note or ""
        table.add_row(f.title, "yes" if f.declared else "no", _STYLE.get(f.status, f.status), detail)
    console.print(table)
    contracts = Table(title="Contract (every plugin)")
    contracts.add_column("contract")
    contracts.add_column("result")
    contracts.add_column("reason / detail", overflow="fold")
    for c in report.contracts:
        contracts.add_row(c.title, _STYLE.get(c.status, c.status), c.reason or "")
    console.print(contracts)
    counts = report.counts()
    if report.error:
        console.print(f"[bold red]error:[/] {report.error}", highlight=False)
    verdict = "[bold green]CONFORMS[/]" if report.ok else "[bold red]DOES NOT CONFORM[/]"
    console.print(
        f"{verdict}  {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        + (f", {counts['not run']} not run" if counts.get("not run") else ""),
        highlight=False,
    )

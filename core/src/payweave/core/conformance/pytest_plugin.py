"""pytest plugin (entry point ``pytest11``) that provides the payweave conformance suite.

It is inert unless a test session asks for it: it only registers options, a marker and
fixtures nobody requests by default. The suite's tests (``payweave.core.conformance.suite``)
request the ``payweave`` fixture, which needs the plugin named by ``--payweave-plugin`` (or the
``payweave_plugin`` ini option); the per-capability summary and the JSON report appear only
then.

Options::

    --payweave-plugin NAME        the PSP plugin's entry-point name
    --payweave-setting KEY=VALUE  override one setting of the plugin's account (repeatable)
    --payweave-strict             fail any skip of an applicable test without a written reason
    --payweave-json FILE          write the report as JSON

A plugin repository may override the ``payweave_environment`` fixture to supply its own
:class:`~payweave.hooks.conformance.ConformanceEnvironment` instead of the
``payweave_conformance_environment`` hook.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from .requirements import MARKER, NotApplicable, WrittenReason, requirement_of

REPORT_KEY = pytest.StashKey["Any"]()
RUNNER_PLUGIN = "payweave-conformance-runner"


# ================================================================ options and configuration
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("payweave", "payweave PSP plugin conformance suite")
    group.addoption("--payweave-plugin", dest="payweave_plugin", default=None, metavar="NAME",
                    help="entry-point name of the PSP plugin to test")  # fmt: skip
    group.addoption("--payweave-setting", dest="payweave_settings", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting of the plugin's conformance account (repeatable)")  # fmt: skip
    group.addoption("--payweave-strict", dest="payweave_strict", action="store_true", default=None,
                    help="refuse to skip an applicable test unless the plugin gives a written reason")  # fmt: skip
    group.addoption("--payweave-json", dest="payweave_json", default=None, metavar="FILE",
                    help="write the conformance report as JSON")  # fmt: skip
    parser.addini("payweave_plugin", "entry-point name of the PSP plugin the conformance suite tests", default="")
    parser.addini("payweave_settings", "KEY=VALUE setting overrides for the conformance account", type="linelist", default=[])
    parser.addini("payweave_strict", "conformance strict mode", type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(requirement): a payweave conformance test (set by payweave.core.conformance)"
    )


def _plugin_name(config: pytest.Config) -> str | None:
    return config.getoption("payweave_plugin") or str(config.getini("payweave_plugin") or "") or None


def _strict(config: pytest.Config) -> bool:
    option = config.getoption("payweave_strict")
    return bool(option) if option is not None else bool(config.getini("payweave_strict"))


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: a JSON list or object (or ``null``) is decoded, anything else stays a
    string for the settings model to convert (``true``, ``5``, ``1.4``, ``a,b``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise pytest.UsageError(f"--payweave-setting needs KEY=VALUE, not {text!r}")
    stripped = value.strip()
    if stripped == "null":
        return key.strip(), None
    if stripped[:1] in "[{":
        try:
            return key.strip(), json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"--payweave-setting {key}: {exc}") from None
    return key.strip(), value


def _overrides(config: pytest.Config) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for text in [*config.getini("payweave_settings"), *config.getoption("payweave_settings")]:
        key, value = parse_setting(str(text))
        values[key] = value
    runner = config.pluginmanager.get_plugin(RUNNER_PLUGIN)
    if runner is not None:
        values.update(getattr(runner, "overrides", {}) or {})
    return values


# ================================================================ fixtures (requested by the suite only)
@pytest.fixture(scope="session")
def payweave_manager(pytestconfig: pytest.Config) -> Any:
    """The real plugin manager with the plugin under test loaded from its entry point."""
    from payweave.core.plugins import PluginManager
    from payweave.core.settings import PayweaveSettings

    name = _plugin_name(pytestconfig)
    if not name:
        raise pytest.UsageError(
            "The payweave conformance suite needs the plugin to test: --payweave-plugin NAME "
            "(or `payweave_plugin = NAME` in the pytest ini options)."
        )
    manager = PluginManager(PayweaveSettings(plugins=name))
    manager.load_entrypoints()
    record = manager.plugins()
    found = next((r for r in record if r.name == name), None)
    if found is None or found.status != "active":
        problem = found.error.message if found is not None and found.error else f"no {name!r} entry point in group 'payweave'"
        pytest.fail(f"The plugin {name!r} could not be loaded: {problem}", pytrace=False)
    if found.kind != "psp":
        pytest.fail(f"The plugin {name!r} is a {found.kind} plugin; the conformance suite tests PSP plugins.", pytrace=False)
    return manager


@pytest.fixture(scope="session")
def payweave_environment(payweave_manager: Any, pytestconfig: pytest.Config) -> Iterator[Any]:
    """The plugin's ConformanceEnvironment, from its ``payweave_conformance_environment`` hook.

    Override this fixture in your conftest.py to build the environment yourself.
    """
    from payweave.hooks.conformance import ConformanceEnvironment
    from payweave.hooks.errors import NotSupported

    name = _plugin_name(pytestconfig)
    try:
        manager_cm = payweave_manager.call(name, "payweave_conformance_environment", None, account_name="conformance")
    except NotSupported:
        pytest.fail(
            f"The plugin {name!r} implements no payweave_conformance_environment hook; implement it or override "
            "the payweave_environment fixture (see docs/writing-a-psp-plugin.md).",
            pytrace=False,
        )
    if manager_cm is None or not hasattr(manager_cm, "__enter__"):
        pytest.fail(f"payweave_conformance_environment of {name!r} must return a context manager, not {manager_cm!r}", pytrace=False)
    with manager_cm as env:
        if not isinstance(env, ConformanceEnvironment):
            pytest.fail(f"the conformance environment of {name!r} is a {type(env).__name__}, not a ConformanceEnvironment", pytrace=False)
        yield env


@pytest.fixture(scope="session")
def payweave(payweave_manager: Any, payweave_environment: Any, pytestconfig: pytest.Config) -> Any:
    """The :class:`~payweave.core.conformance.harness.Harness` every suite test receives."""
    from payweave.hooks.models import Account

    from .harness import Harness

    name = _plugin_name(pytestconfig)
    env = payweave_environment
    account = env.account
    if not isinstance(account, Account) or account.plugin != name:
        pytest.fail(f"the conformance environment's account must be an Account of plugin {name!r}, not {account!r}", pytrace=False)
    overrides = _overrides(pytestconfig)
    if overrides:
        account = _with_overrides(account, overrides)
        env.account = account  # the environment reads self.account when it acts
    harness = Harness(plugin=name, manager=payweave_manager, env=env, account=account, strict=_strict(pytestconfig), overrides=overrides)
    state = pytestconfig.stash.get(REPORT_KEY, None)
    if state is not None:
        state.attach(harness)
    return harness


def _with_overrides(account: Any, overrides: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from payweave.hooks.models import Account

    settings = account.settings
    if settings is None:
        pytest.fail(f"plugin {account.plugin!r} has no settings; cannot apply {sorted(overrides)}", pytrace=False)
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        pytest.fail(f"{type(settings).__name__} has no setting(s) {', '.join(unknown)}", pytrace=False)
    try:
        rebuilt = type(settings)(**{**values, **overrides})
    except ValidationError as exc:
        pytest.fail(f"the settings overrides {overrides} are invalid: {exc.errors()[0]['msg']}", pytrace=False)
    return Account(plugin=account.plugin, name=account.name, settings=rebuilt)


# ================================================================ reporting and strict mode
class _State:
    """Per-session collector of outcomes (kept in ``config.stash``)."""

    def __init__(self, config: pytest.Config) -> None:
        from .report import ConformanceReport

        self.config = config
        self.report = ConformanceReport(plugin=_plugin_name(config) or "?", strict=_strict(config), settings=_overrides(config))
        self.outcomes: dict[str, Any] = {}
        self.harness: Any = None

    def attach(self, harness: Any) -> None:
        self.harness = harness
        record = harness.manager.get(harness.plugin)
        self.report.distribution, self.report.version = record.distribution, record.version
        self.report.capabilities = harness.caps.model_dump(mode="json")
        self.report.settings = dict(harness.overrides)

    def outcome_for(self, item: pytest.Item) -> Any:
        from .report import TestOutcome

        outcome = self.outcomes.get(item.nodeid)
        if outcome is None:
            requirement = requirement_of(item)
            assert requirement is not None
            outcome = TestOutcome(
                nodeid=item.nodeid,
                kind=requirement.kind.value,
                features=[f.value for f in requirement.features],
                contract=requirement.contract.value if requirement.contract else None,
                needs=[f.value for f in requirement.needs],
            )
            self.outcomes[item.nodeid] = outcome
            self.report.tests.append(outcome)
        return outcome

    def finish(self, exitstatus: int) -> Any:
        report = self.report
        report.exit_code = int(exitstatus)
        caps = self.harness.caps if self.harness is not None else None
        notes = dict(self.harness.requirements.skip_reasons) if self.harness is not None else {}
        if self.harness is None and report.tests:
            failed = next((t for t in report.tests if t.reason), None)
            report.error = failed.reason if failed else "the plugin could not be set up"
        report.summarize(caps, notes)
        return report


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(requirement_of(item) is not None for item in items) and REPORT_KEY not in config.stash:
        config.stash[REPORT_KEY] = _State(config)
        state = config.stash[REPORT_KEY]
        for item in items:
            if requirement_of(item) is not None:
                state.outcome_for(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    state = item.config.stash.get(REPORT_KEY, None)
    requirement = requirement_of(item)
    if state is None or requirement is None:
        return report
    outcome = state.outcome_for(item)
    excinfo = call.excinfo
    strict_failure: str | None = None
    if report.skipped and excinfo is not None and not hasattr(report, "wasxfail"):
        skip = excinfo.value
        reason = str(getattr(skip, "msg", skip))
        outcome.reason = reason
        if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            report.longrepr = (report.longrepr[0], report.longrepr[1], f"Skipped: {reason}")
        if isinstance(skip, NotApplicable):
            outcome.skip_kind = "not_applicable"
        elif isinstance(skip, WrittenReason):
            outcome.skip_kind = "written"
        else:
            outcome.skip_kind = "environment"
            if _strict(item.config):
                strict_failure = f"strict mode: skipped without a written reason ({reason})"
                report.outcome = "failed"
                report.longrepr = (
                    f"strict mode: {item.nodeid} applies to this plugin but was skipped ({reason}). Give a written "
                    "reason in ConformanceEnvironment.skip_reasons (keyed by the feature, contract or test name), "
                    "raise NotImplementedError('why') from your environment's own method, or make it pass."
                )
    if report.failed:
        outcome.outcome = "failed"
        outcome.reason = strict_failure or _failure_line(report)
    elif report.skipped:
        if outcome.outcome != "failed":
            outcome.outcome = "skipped"
    elif report.when == "call" and outcome.outcome != "failed":
        outcome.outcome = "passed"
    outcome.duration += float(getattr(report, "duration", 0.0) or 0.0)
    return report


def _failure_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = str(crash.message)
    else:
        text = str(report.longrepr)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "failed"
    return first[:400]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(REPORT_KEY, None)
    if state is None:
        return
    report = state.finish(exitstatus)
    path = session.config.getoption("payweave_json")
    if path:
        report.write_json(path)
    runner = session.config.pluginmanager.get_plugin(RUNNER_PLUGIN)
    if runner is not None:
        runner.report = report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(REPORT_KEY, None)
    runner = config.pluginmanager.get_plugin(RUNNER_PLUGIN)
    if state is None or (runner is not None and not getattr(runner, "print_summary", True)):
        return
    from rich.console import Console

    from .report import render

    report = state.finish(exitstatus)
    buffer = io.StringIO()
    render(report, Console(file=buffer, width=max(100, terminalreporter._tw.fullwidth), force_terminal=terminalreporter.hasmarkup))
    terminalreporter.section("payweave conformance")
    terminalreporter.write(buffer.getvalue())

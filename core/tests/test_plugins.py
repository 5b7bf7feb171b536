"""Plugin manager: entry-point discovery from installed metadata, pinning, blocking, and clear
reports for broken plugins that leave the others working."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from payweave.core.plugins import PluginBug, PluginManager, UnknownPlugin
from payweave.core.settings import PayweaveSettings
from payweave.hooks import NotSupported, PspCapabilities, hookimpl
from payweave.hooks.models import Account, CaptureRequest, Money, PluginInfo

FIXTURE_DISTS = Path(__file__).parent / "fixtures" / "dists"
BUILTIN = {"psp_mock", "psp_stripe_like", "erp_businesscentral"}


@pytest.fixture
def fixture_dists(monkeypatch):
    """Put the fixture distributions (dist-info + module) on sys.path, as `pip install` would."""
    monkeypatch.syspath_prepend(str(FIXTURE_DISTS))
    yield
    for name in list(sys.modules):
        if name.startswith("fx_"):
            del sys.modules[name]


def load(**settings) -> PluginManager:
    manager = PluginManager(PayweaveSettings(**settings))
    manager.load_entrypoints()
    return manager


def test_builtin_plugins_are_found_through_entry_points_only():
    manager = load()
    records = {p.name: p for p in manager.plugins()}
    assert BUILTIN <= set(records)
    mock = records["psp_mock"]
    assert mock.distribution == "payweave-psp-mock"
    assert mock.version
    assert mock.status == "active", mock.error
    assert mock.kind == "psp"


def test_fixture_distribution_is_discovered_from_metadata(fixture_dists):
    manager = load(plugins="fx_good")
    good = manager.get("fx_good")
    assert good.distribution == "payweave_fx_good"
    assert good.version == "1.0"
    assert good.kind == "psp"
    assert "psp_capabilities" in good.hooks


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("fx_import_error", "could not be imported: ModuleNotFoundError"),
        ("fx_unknown_hook", "implements unknown hook 'psp_captur'"),
        ("fx_bad_signature", "invalid hook implementation"),
        ("fx_missing_required", "misses required hook(s) for a psp plugin: psp_capabilities"),
        ("fx_bad_caps", "declares an invalid capability model: Value error, partial_capture needs a manual capture mode"),
        ("fx_undeclared_hook", "declares 'refund' but does not implement psp_refund"),
        ("fx_wrong_name", "names itself 'someone_else', but its entry point is 'fx_wrong_name'"),
    ],
)
def test_broken_plugin_is_reported_clearly_and_others_keep_working(fixture_dists, name, problem):
    manager = load(plugins=f"{name},fx_good,psp_mock")
    record = {p.name: p for p in manager.plugins()}[name]  # broken ones included
    assert record.status == "broken"
    message = record.error.message
    assert message.startswith(f"Plugin {name!r} (distribution payweave_{name} 1.0) "), message
    assert problem in message
    assert record.error.code == "plugin_load_error"
    # the others still work
    assert manager.get("fx_good").status == "active"
    assert manager.get("psp_mock").status == "active"
    with pytest.raises(UnknownPlugin) as excinfo:
        manager.psp(name)
    assert problem in excinfo.value.message


def test_pinning_loads_only_the_named_plugins(fixture_dists):
    manager = load(plugins="psp_mock")
    statuses = {p.name: p.status for p in manager.plugins()}
    assert statuses["psp_mock"] == "active"
    assert statuses["psp_stripe_like"] == "not_pinned"
    assert statuses["fx_good"] == "not_pinned"
    assert [p.name for p in manager.active()] == ["psp_mock"]


def test_pinning_by_distribution_name():
    manager = load(plugins="payweave-psp-mock")
    assert [p.name for p in manager.active()] == ["psp_mock"]


def test_empty_pin_loads_none():
    manager = load(plugins="")
    assert manager.active() == []
    assert {p.status for p in manager.plugins()} == {"not_pinned"}


def test_pinned_but_missing_plugin_is_an_error():
    manager = load(plugins="psp_mock,psp_nowhere")
    errors = [e.message for e in manager.errors()]
    assert any("'psp_nowhere'" in m and "not installed" in m for m in errors)
    assert manager.get("psp_mock").status == "active"


def test_pin_from_environment(monkeypatch):
    monkeypatch.setenv("PAYWEAVE_PLUGINS", "psp_mock")
    manager = PluginManager(PayweaveSettings())
    manager.load_entrypoints()
    assert [p.name for p in manager.active()] == ["psp_mock"]


def test_block_list():
    manager = load(disabled_plugins="psp_stripe_like")
    statuses = {p.name: p.status for p in manager.plugins()}
    assert statuses["psp_stripe_like"] == "blocked"
    assert statuses["psp_mock"] == "active"
    assert all(p.status == "blocked" for p in load(disabled_plugins="*").plugins())


class _Misbehaving:
    """An in-process plugin that breaks the contract at call time."""

    @hookimpl
    def payweave_plugin_info(self):
        return PluginInfo(name="fx_misbehaving", kind="psp", title="Misbehaving")

    @hookimpl
    def psp_capabilities(self, account):
        return PspCapabilities(capture_modes=["manual"], partial_capture=True)

    @hookimpl
    def psp_reserve(self, account, request):
        return {"psp_reference": "not a model"}

    @hookimpl
    def psp_capture(self, account, request):
        raise KeyError("boom")


def _capture_request() -> CaptureRequest:
    return CaptureRequest(
        idempotency_key="tx1:capture:1", transaction_id="tx1", psp_reference="p1", amount=Money.of("1.00", "EUR")
    )


def test_contract_violations_at_call_time_become_typed_errors():
    manager = load(plugins="")
    record = manager.register(_Misbehaving(), name="fx_misbehaving")
    assert record.status == "active", record.error
    psp = manager.psp("fx_misbehaving")
    account = Account(plugin="fx_misbehaving")
    with pytest.raises(PluginBug) as excinfo:
        psp.capture(account, _capture_request())
    assert "raised KeyError in psp_capture instead of a payweave error" in excinfo.value.message
    with pytest.raises(PluginBug, match="returned dict from psp_reserve"):
        psp.reserve(account, request=None)  # type: ignore[arg-type]
    with pytest.raises(NotSupported, match="does not implement psp_refund"):
        psp.refund(account, request=None)  # type: ignore[arg-type]


def test_in_process_registration_gets_the_same_validation():
    class NoInfo:
        @hookimpl
        def psp_capabilities(self, account):
            return PspCapabilities()

    manager = load(plugins="")
    record = manager.register(NoInfo(), name="fx_noinfo")
    assert record.status == "broken"
    assert "does not implement the required hook 'payweave_plugin_info'" in record.error.message


def test_calls_reach_only_the_named_plugin():
    manager = load(plugins="psp_mock")
    manager.register(_Misbehaving(), name="fx_misbehaving")
    caps = manager.psp("psp_mock").capabilities(manager.account("psp_mock"))
    assert isinstance(caps, PspCapabilities)
    # the misbehaving plugin was not consulted (its capabilities differ)
    assert caps != manager.psp("fx_misbehaving").capabilities(Account(plugin="fx_misbehaving"))


def test_unknown_plugin_error_lists_loaded_ones():
    manager = load(plugins="psp_mock")
    with pytest.raises(UnknownPlugin) as excinfo:
        manager.psp("nope")
    assert "No plugin named 'nope' is loaded (loaded: psp_mock)" in excinfo.value.message
    with pytest.raises(UnknownPlugin, match="is a psp plugin, not erp"):
        manager.erp("psp_mock")


def test_tracing_logs_hook_calls(capsys):
    from payweave.core import logging as pw_logging

    pw_logging.configure("json", "INFO")
    manager = PluginManager(PayweaveSettings(plugins="psp_mock", trace_plugins=True))
    manager.load_entrypoints()
    manager.psp("psp_mock").capabilities(manager.account("psp_mock"))
    out = capsys.readouterr().err
    assert '"event": "hook.call"' in out and '"hook": "psp_capabilities"' in out
    assert '"event": "hook.done"' in out and '"outcome": "ok"' in out


def test_invalid_account_settings_name_the_problem():
    from payweave.hooks.errors import ConfigurationError

    manager = load(plugins="psp_mock")
    with pytest.raises(ConfigurationError) as excinfo:
        manager.account("psp_mock", "bad", profile="no_such_profile")
    assert "Account 'bad' of plugin 'psp_mock' has missing or invalid settings: profile:" in excinfo.value.message

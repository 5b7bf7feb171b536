"""Fixtures for psp_mock: the real PluginManager loading psp_mock by its entry point, and a
factory of accounts with unique names (each gets its own ledger)."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from payweave.core.plugins import PluginManager, PspClient
from payweave.core.settings import PayweaveSettings
from payweave.hooks.models import Account
from payweave.plugins.psp_mock import MockLedger, ledger_for, reset_ledgers

_counter = itertools.count()


@pytest.fixture(scope="session")
def manager() -> PluginManager:
    pm = PluginManager(PayweaveSettings(plugins="psp_mock"))
    pm.load_entrypoints()
    assert pm.get("psp_mock").status == "active", pm.errors()
    return pm


@pytest.fixture(scope="session")
def psp(manager: PluginManager) -> PspClient:
    return manager.psp("psp_mock")


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    yield
    reset_ledgers()


@pytest.fixture
def make_account(manager: PluginManager) -> Callable[..., Account]:
    def make(**overrides: Any) -> Account:
        return manager.account("psp_mock", f"t{next(_counter)}", **overrides)

    return make


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account()


@pytest.fixture
def ledger(account: Account) -> MockLedger:
    return ledger_for(account)

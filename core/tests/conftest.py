"""Shared fixtures of the core tests.

* ``store`` is parametrized over SQLite (a fresh file per test, copied from a migrated template)
  and PostgreSQL (one schema per test session, emptied before each test). Without
  ``PAYWEAVE_TEST_POSTGRES_URL`` the PostgreSQL variants skip and say so.
* ``engine`` is a :class:`PaymentEngine` on that store with a :class:`ManualClock`, and psp_mock
  configured as several PSPs: one psp_mock account per capability profile (``full``,
  ``no_partial_capture``, ``no_void``, ``no_cart_update_after_reservation``, ``auto_capture``,
  ``no_partial_refund``, ``minimal``), each with its own ledger whose clock is frozen at the
  engine's time. ``time_machine.advance(...)`` moves both clocks.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from payweave.core.engine import PaymentEngine
from payweave.core.jobs.clock import ManualClock
from payweave.core.plugins import PluginManager
from payweave.core.settings import JobSettings, PayweaveSettings
from payweave.core.store import Store
from payweave.core.testing.stores import (  # noqa: F401  (SKIP_PG/POSTGRES_ENV: imported by tests)
    POSTGRES_ENV,
    SKIP_PG,
    migrated_sqlite_template,
    postgres_schema_url,
    sqlite_store_from,
)
from payweave.plugins.psp_mock import ledger_for, reset_ledgers

#: psp_mock accounts, one per capability profile ("several PSPs"); account name = profile name.
PROFILES = (
    "full",
    "no_partial_capture",
    "no_void",
    "no_partial_refund",
    "no_cart_update_after_reservation",
    "auto_capture",
    "minimal",
    "credit_only",
    "single_capture",
)

def engine_settings(database_url: str = "sqlite:///unused.db", **jobs: object) -> PayweaveSettings:
    accounts = {"psp_mock": {name: {"profile": name} for name in PROFILES}}
    accounts["psp_mock"]["credit_only"] = {"profile": "full", "refund": "none"}
    # partial captures, but one capture per reservation (the rest is released)
    accounts["psp_mock"]["single_capture"] = {"profile": "full", "capture_modes": "automatic,manual"}
    return PayweaveSettings(
        database_url=database_url,
        plugins="psp_mock",
        accounts=accounts,
        jobs=JobSettings(**{"backoff_base": 1.0, "backoff_max": 60.0, **jobs}),
    )


# ------------------------------------------------------------------------------------------- stores
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A migrated schema of its own on the server named by PAYWEAVE_TEST_POSTGRES_URL."""
    with postgres_schema_url("pw_test") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_store(postgres_url: str | None) -> Iterator[Store | None]:
    if postgres_url is None:
        yield None
        return
    store = Store(postgres_url, migrate=False)
    yield store
    store.dispose()


def _sqlite_store(tmp_path: Path, template: Path) -> Store:
    return sqlite_store_from(template, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = _sqlite_store(tmp_path, sqlite_template)
        yield store
        store.dispose()
        return
    pg: Store | None = request.getfixturevalue("postgres_store")
    if pg is None:
        pytest.skip(SKIP_PG)
    pg.delete_all()
    yield pg


@pytest.fixture
def sqlite_store(tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    store = _sqlite_store(tmp_path, sqlite_template)
    yield store
    store.dispose()


# ------------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="session")
def plugin_manager() -> PluginManager:
    manager = PluginManager(engine_settings())
    manager.load_entrypoints()
    assert manager.get("psp_mock").status == "active", manager.errors()
    return manager


class TimeMachine:
    """Moves the engine's clock and every psp_mock ledger's clock together."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        for name in PROFILES:
            ledger_for(f"psp_mock:{name}").clock.freeze(clock.now())

    def advance(self, delta: timedelta | float) -> None:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self.clock.advance(step)
        for name in PROFILES:
            ledger_for(f"psp_mock:{name}").clock.advance(step)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def time_machine(clock: ManualClock) -> Iterator[TimeMachine]:
    reset_ledgers()
    yield TimeMachine(clock)
    reset_ledgers()


@pytest.fixture
def engine(store: Store, plugin_manager: PluginManager, time_machine: TimeMachine) -> PaymentEngine:
    return PaymentEngine(store, plugin_manager, clock=time_machine.clock, settings=engine_settings(str(store.url)))


@pytest.fixture
def method(engine: PaymentEngine):
    """``method(profile, **options)`` saves payment method ``<PROFILE>`` on the psp_mock account
    of that profile (company CRONUS) and returns its code."""
    from payweave.core.engine import PaymentMethodSetup

    def make(profile: str = "full", *, code: str | None = None, company_id: str = "CRONUS", **options: object) -> str:
        code = code or profile.upper()[:20]
        engine.save_payment_method(
            PaymentMethodSetup(company_id=company_id, code=code, psp="psp_mock", psp_account=profile, **options)
        )
        return code

    return make


@pytest.fixture
def mock_ledger():
    """``mock_ledger(profile)``: the psp_mock ledger of that profile's account."""
    return lambda profile="full": ledger_for(f"psp_mock:{profile}")

"""Fixtures for running the conformance suite from our own tests."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BROKEN_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "broken_plugins"


@pytest.fixture
def broken_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fixture distribution of deliberately broken plugins on sys.path, so their
    entry points appear in the ``payweave`` group like installed plugins."""
    monkeypatch.syspath_prepend(str(BROKEN_PLUGINS))
    importlib.invalidate_caches()
    return BROKEN_PLUGINS

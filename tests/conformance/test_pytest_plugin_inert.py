"""The pytest11 plugin changes nothing for a project that does not ask for the suite, and
explains itself to one that asks without naming a plugin."""
from __future__ import annotations

from pathlib import Path

import pytest


def _ini(path: Path) -> str:
    (path / "pytest.ini").write_text("[pytest]\n")
    return str(path / "pytest.ini")


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = pytest.main([str(tmp_path), "--rootdir", str(tmp_path), "-c", _ini(tmp_path),
                        "-p", "no:cacheprovider", "--import-mode=importlib", "--setup-show",
                        "-W", "ignore::pytest.PytestAssertRewriteWarning", *args])  # fmt: skip
    return int(code), capsys.readouterr().out


def test_inert_for_other_projects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    code, out = _run(tmp_path, capsys)
    assert code == 0
    after_header = out.split("collected", 1)[1]
    assert "payweave" not in after_header, out  # no fixture set up, no summary section


def test_suite_without_a_plugin_name_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "test_suite.py").write_text("from payweave.core.conformance.suite import *  # noqa\n")
    code, out = _run(tmp_path, capsys, "-k", "test_reserve and not refuses", "-x")
    assert code != 0
    assert "--payweave-plugin" in out

"""The plugin template (`payweave new-plugin NAME`) passes the conformance suite for what it
declares, out of the box: render it, "install" it (a dist-info with its entry point, as pip
would write), and run the suite on it two ways: the plugin author's own pytest run and
`payweave conformance NAME --strict`."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from payweave.core.conformance.report import PROVEN, REFUSED
from payweave.core.conformance.runner import run_conformance
from payweave.core.conformance.templates import TemplateError, render_plugin, template_files
from payweave.hooks.capabilities import Feature


def _install(project: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the rendered project importable and its entry point visible, like `pip install -e`."""
    src = project / "src"
    dist_info = src / f"payweave_plugin_{name}-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: payweave-plugin-{name.replace('_', '-')}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[payweave]\n{name} = payweave.plugins.{name}.plugin\n")
    monkeypatch.syspath_prepend(str(src))
    importlib.invalidate_caches()


@pytest.fixture
def template_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    name = "tpl_conformance_pay"
    project = tmp_path / "payweave-plugin-tpl"
    written = render_plugin(name, project, title="Template Check Pay")
    assert {p.relative_to(project).as_posix() for p in written} == {
        "README.md",
        "pyproject.toml",
        f"src/payweave/plugins/{name}/__init__.py",
        f"src/payweave/plugins/{name}/conformance.py",
        f"src/payweave/plugins/{name}/plugin.py",
        f"src/payweave/plugins/{name}/psp_api.py",
        f"src/payweave/plugins/{name}/settings.py",
        "tests/test_conformance.py",
    }
    _install(project, name, monkeypatch)
    yield name, project
    for module in [m for m in sys.modules if m.startswith(f"payweave.plugins.{name}")]:
        del sys.modules[module]


def test_template_passes_the_suite_in_strict_mode(template_plugin: tuple[str, Path]) -> None:
    name, _ = template_plugin
    report = run_conformance(name, strict=True)
    assert report.ok, (report.failed_tests(), report.error)
    caps = importlib.import_module(f"payweave.plugins.{name}.plugin").CAPABILITIES
    assert any(caps.declares(f) for f in Feature) and not all(caps.declares(f) for f in Feature)
    for feature in Feature:
        assert report.feature(feature).status == (PROVEN if caps.declares(feature) else REFUSED), feature


def test_template_runs_its_own_conformance_tests(template_plugin: tuple[str, Path]) -> None:
    """What the plugin author runs: `pytest` in the project, suite star-imported."""
    _, project = template_plugin
    code = pytest.main([str(project / "tests"), "-c", str(project / "pyproject.toml"), "--rootdir", str(project),
                        "-p", "no:cacheprovider", "-q", "-W", "ignore::pytest.PytestAssertRewriteWarning"])  # fmt: skip
    assert code == 0


def test_template_refuses_bad_names_and_existing_directories(tmp_path: Path) -> None:
    for bad in ("Acme", "1pay", "acme-pay", "class", "a", "x_"):
        with pytest.raises(TemplateError):
            render_plugin(bad, tmp_path / bad)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    with pytest.raises(TemplateError, match="not empty"):
        render_plugin("acme_pay", tmp_path / "taken")
    assert all(path.suffix == ".tmpl" for path in template_files())

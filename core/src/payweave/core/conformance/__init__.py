"""The payweave PSP plugin conformance suite (see docs/conformance.md).

* :mod:`.suite`: the pytest test classes (``from payweave.core.conformance.suite import *``);
* :mod:`.requirements`: which test applies, computed from the plugin's ``PspCapabilities``;
* :mod:`.harness`: the ``payweave`` fixture object the tests drive the plugin with;
* :mod:`.pytest_plugin`: options, fixtures, strict mode and the report (``pytest11`` entry point,
  inert unless asked for);
* :func:`run_conformance`: run it in-process (``payweave conformance PLUGIN``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import ConformanceReport
    from .runner import run_conformance

__all__ = ["ConformanceReport", "run_conformance"]


def __getattr__(name: str) -> Any:  # keep `import payweave.core.conformance` free of pytest
    if name == "run_conformance":
        from .runner import run_conformance

        return run_conformance
    if name == "ConformanceReport":
        from .report import ConformanceReport

        return ConformanceReport
    raise AttributeError(name)

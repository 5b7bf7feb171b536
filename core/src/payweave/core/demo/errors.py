"""How the demo fails: loudly, with what did not hold."""
from __future__ import annotations


class DemoFailed(Exception):
    """An outcome the demo checks did not hold (exit code 1)."""


class DemoUsageError(Exception):
    """The demo cannot start as asked (exit code 2), e.g. the directory holds a database already."""


__all__ = ["DemoFailed", "DemoUsageError"]

"""The ``payweave`` command line (Typer + Rich).

Each command group lives in its own module in this package and registers itself on ``app``;
:data:`COMMAND_MODULES` lists them (add yours there).
"""
from __future__ import annotations

import importlib

from .app import app, console, main

COMMAND_MODULES = [
    "payweave.core.cli.tx_cmd",
    "payweave.core.cli.jobs_cmd",
    "payweave.core.cli.worker_cmd",
    "payweave.core.cli.plugins_cmd",
    "payweave.core.cli.sandbox_cmd",
    "payweave.core.cli.conformance_cmd",
    "payweave.core.cli.sync_cmd",
    "payweave.core.cli.serve_cmd",
    "payweave.core.cli.keys_cmd",
    "payweave.core.cli.demo_cmd",
    "payweave.core.cli.reliability_cmd",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module)

__all__ = ["app", "console", "main"]

"""Render the hook reference (docs/plugin-hooks.md) from the hookspecs' docstrings.

    python -m payweave.hooks.docs > docs/plugin-hooks.md

A test keeps the committed page identical to this output, so the docs cannot drift.
"""
from __future__ import annotations

import inspect

from . import hookspecs
from .capabilities import Feature


def _specs() -> list[tuple[str, object]]:
    return [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    ]


def render_hook_reference() -> str:
    out = [
        "# payweave plugin hooks",
        "",
        "Generated from `hooks/src/payweave/hooks/hookspecs.py` by `python -m payweave.hooks.docs`;",
        "do not edit by hand. Import the marker with `from payweave.hooks import hookimpl`.",
        "",
        inspect.getdoc(hookspecs) or "",
        "",
        "## Features and the hooks they require",
        "",
        "| feature | meaning | hooks |",
        "|---|---|---|",
    ]
    for feature in Feature:
        hooks = ", ".join(f"`{h}`" for h in hookspecs.FEATURE_HOOKS[feature])
        out.append(f"| `{feature.value}` | {feature.title} | {hooks} |")
    out += ["", f"Required for every PSP plugin: {', '.join(f'`{h}`' for h in hookspecs.PSP_REQUIRED_HOOKS)}.",
            f"Required for every ERP plugin: {', '.join(f'`{h}`' for h in hookspecs.ERP_REQUIRED_HOOKS)}.", ""]
    for name, fn in _specs():
        params = ", ".join(inspect.signature(fn).parameters)  # type: ignore[arg-type]
        opts = getattr(fn, f"{hookspecs.PROJECT}_spec")
        out += [f"## `{name}({params})`", ""]
        if opts.get("firstresult"):
            out += ["*Called on the one plugin that owns the account; the first non-None result is used.*", ""]
        out += [inspect.getdoc(fn) or "", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render_hook_reference(), end="")

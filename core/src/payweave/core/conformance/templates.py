"""``payweave new-plugin NAME``: write a minimal PSP plugin that passes the conformance suite
for what it declares (reserve, full capture, full void, partial refunds, webhooks).

The files live in ``template/`` next to this module, with ``.tmpl`` suffixes (so no tool takes
them for code of the core) and ``__name__`` in paths; placeholders are ``{{name}}``,
``{{NAME}}``, ``{{Class}}``, ``{{title}}`` and ``{{dist}}``.
"""
from __future__ import annotations

import keyword
import re
from pathlib import Path

TEMPLATE_DIR = Path(__file__).with_name("template")
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


class TemplateError(ValueError):
    pass


def placeholders(name: str, title: str | None = None) -> dict[str, str]:
    if not _NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise TemplateError(
            f"{name!r} is not a valid plugin name: use 2-40 lower-case letters, digits and underscores, "
            "starting with a letter (it becomes the entry-point and package name)."
        )
    words = name.split("_")
    return {
        "{{name}}": name,
        "{{NAME}}": name.upper(),
        "{{Class}}": "".join(w.capitalize() for w in words if w),
        "{{title}}": title or " ".join(w.capitalize() for w in words if w),
        "{{dist}}": "payweave-plugin-" + name.replace("_", "-"),
    }


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATE_DIR.rglob("*.tmpl") if p.is_file())


def render_plugin(name: str, destination: Path, *, title: str | None = None, force: bool = False) -> list[Path]:
    """Write the plugin ``name`` into ``destination`` (a new directory); return the files."""
    values = placeholders(name, title)
    if destination.exists() and any(destination.iterdir()) and not force:
        raise TemplateError(f"{destination} exists and is not empty (use --force to write into it).")
    written: list[Path] = []
    for source in template_files():
        relative = source.relative_to(TEMPLATE_DIR).as_posix().removesuffix(".tmpl").replace("__name__", name)
        text = source.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        leftover = re.search(r"\{\{[A-Za-z]+\}\}", text)
        if leftover:
            raise TemplateError(f"template {source.name} has an unknown placeholder {leftover.group(0)}")
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written

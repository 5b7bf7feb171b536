"""Static checks over payweave's own source (core and every plugin): no SQL built from strings,
and webhook / API-key verification that compares in constant time.

* **No SQL from strings.** Every ``text(...)`` / ``literal_column(...)`` must get a string
  *literal*; every ``execute`` / ``exec_driver_sql`` / ``executemany`` / ``executescript`` must not
  get an f-string, a ``+`` or ``%`` concatenation, or a ``.format()`` call as its statement (values
  go in as bound parameters). Constant SQL (PRAGMAs, ``BEGIN IMMEDIATE``, ``SELECT 1``) is fine.
  :data:`ALLOWED` lists reviewed exceptions (none today).
* **Constant-time comparison.** The functions that verify a signature or a secret
  (:data:`VERIFIERS`) must call ``hmac.compare_digest`` and must not compare the secret with
  ``==`` / ``!=``.
"""
from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SQL_CALLS = {"execute", "exec_driver_sql", "executemany", "executescript"}
TEXT_CALLS = {"text", "literal_column"}
#: (file name suffix, line) pairs reviewed and allowed; keep empty unless there is no other way.
ALLOWED: frozenset[tuple[str, int]] = frozenset()
#: (module, function) that verify a secret or a signature.
VERIFIERS: tuple[tuple[str, str], ...] = (
    ("payweave.plugins.psp_mock.webhooks", "verify"),
    ("payweave.plugins.psp_stripe_like.webhooks", "verify"),
    ("payweave.plugins.erp_businesscentral.subscriptions", "parse_notification"),
    ("payweave.core.service.apikeys", "ApiKeys.authenticate"),
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def source_roots() -> list[Path]:
    """The installed payweave packages: hooks, core and the plugins shipped with them."""
    roots = []
    for name in ("payweave.hooks", "payweave.core", "payweave.plugins.psp_mock", "payweave.plugins.psp_stripe_like",
                 "payweave.plugins.erp_businesscentral"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        roots += [Path(p) for p in module.__path__]
    return roots


def python_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "migrations" in path.parts and path.name != "env.py":
                continue  # Alembic revisions: DDL from SQLAlchemy constructs
            yield path


def _is_string_building(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _has_str(node.left) or _has_str(node.right) or _is_string_building(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"format", "join", "replace"}:
        return True
    return False


def _has_str(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def sql_findings(roots: Iterable[Path] | None = None) -> tuple[list[Finding], int]:
    """(findings, number of SQL call sites inspected)."""
    findings: list[Finding] = []
    inspected = 0
    for path in python_files(roots or source_roots()):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = _call_name(node)
            first = node.args[0]
            where = (path.name, node.lineno)
            if name in TEXT_CALLS:
                inspected += 1
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)) and where not in ALLOWED:
                    findings.append(Finding(str(path), node.lineno, f"{name}() is given {ast.unparse(first)[:80]}, not a literal"))
            elif name in SQL_CALLS:
                inspected += 1
                if _is_string_building(first) and where not in ALLOWED:
                    findings.append(Finding(str(path), node.lineno, f"{name}() gets SQL built from strings: "
                                                                   f"{ast.unparse(first)[:80]}"))
    return findings, inspected


def constant_time_findings() -> list[Finding]:
    """Each verifier calls hmac.compare_digest and never compares with == / != ."""
    findings: list[Finding] = []
    for module_name, qualname in VERIFIERS:
        module = importlib.import_module(module_name)
        path = Path(module.__file__ or "")
        tree = ast.parse(path.read_text())
        node: ast.AST | None = tree
        for part in qualname.split("."):
            node = next((n for n in ast.iter_child_nodes(node) if isinstance(n, ast.FunctionDef | ast.ClassDef)
                         and n.name == part), None)
            if node is None:
                break
        if node is None:
            findings.append(Finding(str(path), 0, f"{qualname} not found"))
            continue
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and _call_name(n) == "compare_digest"]
        if not calls:
            findings.append(Finding(str(path), node.lineno, f"{qualname} does not use hmac.compare_digest"))
        for cmp in (n for n in ast.walk(node) if isinstance(n, ast.Compare)):
            if any(isinstance(op, ast.Eq | ast.NotEq) for op in cmp.ops):
                text = ast.unparse(cmp)
                if any(word in text.lower() for word in ("sign", "digest", "secret", "expected", "candidate", "state")):
                    findings.append(Finding(str(path), cmp.lineno, f"{qualname} compares a secret with ==/!=: {text[:80]}"))
    return findings


__all__ = ["ALLOWED", "VERIFIERS", "Finding", "constant_time_findings", "source_roots", "sql_findings"]

"""OData v4 query options as the sandbox supports them.

``$filter``: ``eq ne gt ge lt le``, ``and or not``, parentheses, ``contains/startswith/endswith``;
literals: 'strings' ('' escapes a quote), numbers, true/false/null, unquoted datetimes
(``2019-08-18T20:05:51.603Z``), dates and GUIDs. Operand types are checked the way OData does
(a quoted datetime against ``lastModifiedDateTime`` is an error, as in BC).

Paging is keyset-based: a source yields records in a stable order with a sortable key; the
opaque ``$skiptoken`` carries the last key (and what is left of ``$top``). Bounds on the
source's range field (``lastModifiedDateTime`` for tables) found in a top-level ``and`` chain
turn into a bisect, so a delta page costs O(page), not O(table).

``$orderby`` (``prop [asc|desc]``, comma-separated): on the property a source's index is sorted
by (``lastModifiedDateTime`` for tables) the scan walks the index either way and the skiptoken
stays keyset-based (the last ``(lastModifiedDateTime, id)``), as BC's does; any other ordering
sorts the matching records in memory and the skiptoken carries an offset.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import BCApiError

MAX_PAGE_SIZE = 20_000

_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)|
    (?P<string>'(?:[^']|'')*')|
    (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))|
    (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|
    (?P<date>\d{4}-\d{2}-\d{2})|
    (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfF]?)|
    (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    )""",
    re.VERBOSE,
)

COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
            "lt": "LessThan", "le": "LessThanOrEqual"}
EDM = {"str": "Edm.String", "enum": "Edm.String", "guid": "Edm.Guid", "decimal": "Edm.Decimal", "int": "Edm.Int32",
       "int64": "Edm.Int64", "bool": "Edm.Boolean", "date": "Edm.Date", "datetime": "Edm.DateTimeOffset"}
LIT_EDM = {"string": "Edm.String", "datetime": "Edm.DateTimeOffset", "guid": "Edm.Guid", "date": "Edm.Date",
           "number": "Edm.Decimal", "bool": "Edm.Boolean", "null": "null"}


def syntax_error(text: str, detail: str) -> BCApiError:
    return BCApiError(400, "BadRequest", f"Syntax error in $filter '{text}': {detail}.")


@dataclass(frozen=True)
class Literal:
    kind: str  # string | datetime | guid | date | number | bool | null
    value: Any


@dataclass(frozen=True)
class Cmp:
    field: str
    op: str
    lit: Literal


@dataclass(frozen=True)
class Func:
    name: str
    field: str
    lit: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    inner: Any


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise syntax_error(text, f"unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_filter(text: str) -> Any:
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise syntax_error(text, "unexpected end of expression")
        tok = toks[pos]
        pos += 1
        return tok

    def literal() -> Literal:
        kind, val = take()
        if kind == "string":
            return Literal("string", val[1:-1].replace("''", "'"))
        if kind == "datetime":
            try:
                return Literal("datetime", _to_us(val))
            except ValueError:
                raise syntax_error(text, f"'{val}' is not a valid Edm.DateTimeOffset") from None
        if kind == "guid":
            return Literal("guid", val.lower())
        if kind == "date":
            try:
                return Literal("date", date.fromisoformat(val))
            except ValueError:
                raise syntax_error(text, f"'{val}' is not a valid Edm.Date") from None
        if kind == "number":
            try:
                return Literal("number", Decimal(val.rstrip("mMdDfF")))
            except InvalidOperation:
                raise syntax_error(text, f"bad number {val}") from None
        if kind == "word" and val in ("true", "false"):
            return Literal("bool", val == "true")
        if kind == "word" and val == "null":
            return Literal("null", None)
        raise syntax_error(text, f"expected a literal, found '{val}'")

    def primary() -> Any:
        tok = peek()
        if tok is None:
            raise syntax_error(text, "unexpected end of expression")
        if tok[0] == "lparen":
            take()
            node = expr()
            if take()[0] != "rparen":
                raise syntax_error(text, "')' expected")
            return node
        if tok[0] == "word" and tok[1] == "not":
            take()
            return Not(primary())
        if tok[0] != "word":
            raise syntax_error(text, f"expected a property name, found '{tok[1]}'")
        name = take()[1]
        if name in ("contains", "startswith", "endswith") and peek() and peek()[0] == "lparen":  # type: ignore[index]
            take()
            field_tok = take()
            if field_tok[0] != "word" or take()[0] != "comma":
                raise syntax_error(text, f"{name}(property, 'text') expected")
            lit = literal()
            if take()[0] != "rparen":
                raise syntax_error(text, "')' expected")
            return Func(name, field_tok[1], lit)
        op_tok = take()
        if op_tok[0] != "word" or op_tok[1] not in COMPARISONS:
            raise syntax_error(text, f"expected a comparison operator after '{name}'")
        return Cmp(name, op_tok[1], literal())

    def conj() -> Any:
        node = primary()
        while (tok := peek()) is not None and tok == ("word", "and"):
            take()
            node = BoolOp("and", node, primary())
        return node

    def expr() -> Any:
        node = conj()
        while (tok := peek()) is not None and tok == ("word", "or"):
            take()
            node = BoolOp("or", node, conj())
        return node

    node = expr()
    if pos != len(toks):
        raise syntax_error(text, f"unexpected '{toks[pos][1]}'")
    return node


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt - _EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------- compile against fields

class FieldDef:
    """One property of an entity type: name, type and a getter from the stored record."""

    __slots__ = ("name", "type", "get")

    def __init__(self, name: str, type: str, get: Callable[[Any], Any]) -> None:
        self.name = name
        self.type = type
        self.get = get


def _mismatch(fd: FieldDef, lit: Literal, op: str) -> BCApiError:
    return BCApiError(
        400, "BadRequest",
        f"A binary operator with incompatible types was detected. Found operand types '{EDM[fd.type]}' and "
        f"'{LIT_EDM[lit.kind]}' for operator kind '{OP_NAMES.get(op, op)}'.",
    )


def _coerce(fd: FieldDef, lit: Literal, op: str) -> Any:
    t, k = fd.type, lit.kind
    if k == "null":
        return None
    if t in ("str", "enum"):
        if k != "string":
            raise _mismatch(fd, lit, op)
        return lit.value
    if t == "guid":
        if k != "guid":
            raise _mismatch(fd, lit, op)
        return lit.value
    if t == "decimal":
        if k != "number":
            raise _mismatch(fd, lit, op)
        return lit.value
    if t in ("int", "int64"):
        if k != "number" or lit.value != lit.value.to_integral_value():
            raise _mismatch(fd, lit, op)
        return int(lit.value)
    if t == "bool":
        if k != "bool":
            raise _mismatch(fd, lit, op)
        return lit.value
    if t == "date":
        if k != "date":
            raise _mismatch(fd, lit, op)
        return lit.value
    if t == "datetime":
        if k != "datetime":
            raise _mismatch(fd, lit, op)
        return lit.value  # microseconds
    raise _mismatch(fd, lit, op)  # pragma: no cover


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}


def compile_filter(node: Any, fields: dict[str, FieldDef], type_name: str) -> Callable[[Any], bool]:
    def field(name: str) -> FieldDef:
        fd = fields.get(name)
        if fd is None:
            raise BCApiError(400, "BadRequest", f"Could not find a property named '{name}' on type 'Microsoft.NAV.{type_name}'.")
        return fd

    def build(n: Any) -> Callable[[Any], bool]:
        if isinstance(n, BoolOp):
            left, right = build(n.left), build(n.right)
            if n.op == "and":
                return lambda r: left(r) and right(r)
            return lambda r: left(r) or right(r)
        if isinstance(n, Not):
            inner = build(n.inner)
            return lambda r: not inner(r)
        if isinstance(n, Func):
            fd = field(n.field)
            if fd.type not in ("str", "enum") or n.lit.kind != "string":
                raise BCApiError(400, "BadRequest", f"The function '{n.name}' needs a string property and a string literal.")
            needle, get = n.lit.value.lower(), fd.get
            if n.name == "contains":
                return lambda r: needle in (get(r) or "").lower()
            if n.name == "startswith":
                return lambda r: (get(r) or "").lower().startswith(needle)
            return lambda r: (get(r) or "").lower().endswith(needle)
        fd = field(n.field)
        value = _coerce(fd, n.lit, n.op)
        get, op = fd.get, _OPS[n.op]
        if value is None:
            if n.op not in ("eq", "ne"):
                raise _mismatch(fd, n.lit, n.op)
            return (lambda r: get(r) is None) if n.op == "eq" else (lambda r: get(r) is not None)
        if fd.type == "datetime":  # stored as epoch ms, literal in microseconds
            return lambda r: op(get(r) * 1000, value)
        if fd.type == "guid":
            return lambda r: op((get(r) or "").lower(), value)
        if fd.type in ("str", "enum") and n.op in ("eq", "ne"):
            # BC compares Code fields case-insensitively; Text eq is exact in OData, but a
            # case-insensitive match is the behaviour clients see on Code keys (numbers, codes)
            folded = value.lower()
            return (lambda r: (get(r) or "").lower() == folded) if n.op == "eq" else (lambda r: (get(r) or "").lower() != folded)
        return lambda r: op(get(r), value)

    return build(node)


def range_bounds(node: Any, field_name: str, scale: int) -> tuple[int | None, int | None]:
    """Inclusive bounds on ``field_name`` implied by a top-level ``and`` chain, in the source's
    key units. ``scale`` converts literal units to key units (datetime: us -> ms = 1000)."""
    lo: int | None = None
    hi: int | None = None

    def visit(n: Any) -> None:
        nonlocal lo, hi
        if isinstance(n, BoolOp) and n.op == "and":
            visit(n.left)
            visit(n.right)
            return
        if not isinstance(n, Cmp) or n.field != field_name or n.lit.kind not in ("datetime", "number"):
            return
        v = n.lit.value
        if n.lit.kind == "number":
            if v != v.to_integral_value():
                return
            v = int(v)
        if n.op in ("gt", "ge", "eq"):
            bound = (v // scale + 1) if n.op == "gt" else -((-v) // scale)
            if n.op == "eq":
                bound = -((-v) // scale)
            lo = bound if lo is None else max(lo, bound)
        if n.op in ("lt", "le", "eq"):
            bound = (-((-v) // scale) - 1) if n.op == "lt" else v // scale
            hi = bound if hi is None else min(hi, bound)

    visit(node)
    return lo, hi


# ---------------------------------------------------------------------- sources and paging

class Source:
    """Records in a stable order with JSON-able keys. ``range_field`` names the property the
    key starts with (bounds on it narrow the scan); ``ordered_by`` names the property the whole
    scan is sorted by (then ``descending`` scans walk it backwards), None when the order is
    only stable, not sorted by a property."""

    range_field: str | None = None
    range_scale: int = 1
    ordered_by: str | None = None

    def scan(self, after: Any, lo: int | None, hi: int | None,
             descending: bool = False) -> Iterator[tuple[Any, Any]]:  # pragma: no cover
        raise NotImplementedError


class TableSource(Source):
    range_field = "lastModifiedDateTime"
    range_scale = 1000
    ordered_by = "lastModifiedDateTime"

    def __init__(self, table: Any, where: Callable[[Any], bool] | None = None) -> None:
        self.table = table
        self.where = where

    def scan(self, after: Any, lo: int | None, hi: int | None, descending: bool = False) -> Iterator[tuple[Any, Any]]:
        after_key = tuple(after) if after is not None else None
        where = self.where
        scan = self.table.scan_desc if descending else self.table.scan
        for key, rec in scan(after_key, lo, hi):
            if where is None or where(rec):
                yield list(key), rec


class UnionSource(Source):
    """Several tables one after another (the companion API's salesDocuments)."""

    range_field = "lastModifiedDateTime"
    range_scale = 1000

    def __init__(self, sources: list[TableSource]) -> None:
        self.sources = sources

    def scan(self, after: Any, lo: int | None, hi: int | None, descending: bool = False) -> Iterator[tuple[Any, Any]]:
        start = after[0] if after is not None else 0
        for i in range(start, len(self.sources)):
            inner_after = after[1:] if (after is not None and i == start) else None
            for key, rec in self.sources[i].scan(inner_after, lo, hi):
                yield [i, *key], rec


class ListSource(Source):
    """A small ordered list (lines of a document or journal) keyed by an increasing int."""

    def __init__(self, items: list[Any], key: Callable[[Any], int], range_field: str | None = None) -> None:
        self.items = items
        self.key = key
        self.range_field = range_field

    def scan(self, after: Any, lo: int | None, hi: int | None, descending: bool = False) -> Iterator[tuple[Any, Any]]:
        for rec in list(self.items):
            k = self.key(rec)
            if after is not None and k <= after:
                continue
            if lo is not None and k < lo:
                continue
            if hi is not None and k > hi:
                return
            yield k, rec


def encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        if not isinstance(data, dict):
            raise ValueError
        return data
    except (ValueError, TypeError):
        raise BCApiError(400, "BadRequest", "The skip token is not valid.") from None


@dataclass
class Page:
    records: list[Any]
    next_token: str | None


def parse_orderby(text: str, fields: dict[str, FieldDef], type_name: str) -> list[tuple[str, bool]]:
    """``$orderby=a desc,b`` -> ``[("a", True), ("b", False)]`` (True = descending)."""
    order: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise BCApiError(400, "BadRequest", f"Syntax error in $orderby '{text}'.")
        if words[0] not in fields:
            raise BCApiError(400, "BadRequest",
                             f"Could not find a property named '{words[0]}' on type 'Microsoft.NAV.{type_name}'.")
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order


def _sorted_scan(source: Source, lo: int | None, hi: int | None, predicate: Callable[[Any], bool] | None,
                 order: list[tuple[str, bool]], fields: dict[str, FieldDef]) -> list[Any]:
    """Every matching record, sorted by ``order`` (nulls first ascending, as OData sorts them)."""
    recs = [rec for _, rec in source.scan(None, lo, hi) if predicate is None or predicate(rec)]
    for name, desc in reversed(order):  # stable sorts, last key first
        get = fields[name].get
        recs.sort(key=lambda r, get=get: (get(r) is not None, get(r)), reverse=desc)
    return recs


def run_page(source: Source, predicate: Callable[[Any], bool] | None, filter_node: Any, page_size: int,
             skiptoken: str | None, top: int | None, skip: int | None,
             order: list[tuple[str, bool]] | None = None, fields: dict[str, FieldDef] | None = None) -> Page:
    lo = hi = None
    if filter_node is not None and source.range_field:
        lo, hi = range_bounds(filter_node, source.range_field, source.range_scale)
    after = None
    remaining = top
    to_skip = skip or 0
    offset = 0
    if skiptoken:
        state = decode_token(skiptoken)
        after = state.get("k")
        remaining = state.get("n")
        offset = state.get("o") or 0
        to_skip = 0
    if remaining is not None and remaining <= 0:
        return Page([], None)
    limit = page_size if remaining is None else min(page_size, remaining)
    descending = False
    if order and not (len(order) == 1 and source.ordered_by is not None and order[0][0] == source.ordered_by):
        # an order the source's index does not have: sort in memory, page by offset
        assert fields is not None
        recs = _sorted_scan(source, lo, hi, predicate, order, fields)
        start = offset + to_skip
        out = recs[start:start + limit]
        end = start + len(out)
        token = None
        if end < len(recs) and (remaining is None or remaining > len(out)):
            token = encode_token({"o": end, "n": None if remaining is None else remaining - len(out)})
        return Page(out, token)
    if order:
        descending = order[0][1]
    out: list[Any] = []
    last_key = None
    more = False
    for key, rec in source.scan(after, lo, hi, descending):
        if predicate is not None and not predicate(rec):
            continue
        if to_skip:
            to_skip -= 1
            continue
        if len(out) >= limit:
            more = True
            break
        out.append(rec)
        last_key = key
    next_token = None
    if more and (remaining is None or remaining > len(out)):
        next_token = encode_token({"k": last_key, "n": None if remaining is None else remaining - len(out)})
    return Page(out, next_token)


def parse_prefer_maxpagesize(header: str | None) -> int:
    if not header:
        return MAX_PAGE_SIZE
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize":
            try:
                n = int(value.strip())
            except ValueError:
                raise BCApiError(400, "BadRequest", f"The value '{value}' of odata.maxpagesize is not valid.") from None
            if n <= 0:
                raise BCApiError(400, "BadRequest", "odata.maxpagesize must be positive.")
            return min(n, MAX_PAGE_SIZE)
    return MAX_PAGE_SIZE


def split_top_level(text: str) -> list[str]:
    """Split ``a,b($expand=c,d),e`` on top-level commas."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return [p for p in parts if p]


def is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36

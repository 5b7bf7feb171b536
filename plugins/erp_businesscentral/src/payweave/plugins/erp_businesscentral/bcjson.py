"""JSON as Business Central speaks it: decimals are JSON *numbers*, never floats in Python.

``loads`` parses every non-integer number as :class:`decimal.Decimal` (integers stay ``int``);
``dumps`` writes a Decimal as a bare JSON number with exactly its digits. ``json`` has no hook
for raw numbers, so Decimals are first turned into marker strings (NUL-delimited, which the
encoder escapes as ``\\u0000``) and the markers' quotes are stripped afterwards; BC text values
never contain NUL, and :func:`dumps` refuses input strings that do.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_OPEN = '"\\u0000'
_CLOSE = '\\u0000"'


def format_decimal(value: Decimal) -> str:
    """``Decimal('1500.00') -> '1500'``, ``Decimal('0.50') -> '0.5'``; never an exponent."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def _prepare(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _prepare(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_prepare(v) for v in obj]
    if isinstance(obj, Decimal):
        return "\x00" + format_decimal(obj) + "\x00"
    if isinstance(obj, float):
        raise TypeError("floats are not allowed in BC payloads; use Decimal")
    if isinstance(obj, str):
        if "\x00" in obj:
            raise ValueError("text values must not contain NUL characters")
        return obj
    if isinstance(obj, datetime):
        raise TypeError("format datetimes explicitly (BC wants ...Z with milliseconds)")
    if isinstance(obj, date):
        return obj.isoformat()
    return obj


def dumps(obj: Any) -> str:
    text = json.dumps(_prepare(obj), ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        text = text.replace(_OPEN, "").replace(_CLOSE, "")
    return text


def dumps_prepared(obj: Any) -> str:
    """Like :func:`dumps` for payloads whose Decimals were already converted with :func:`number`
    (the sandbox's serializers do that while building rows, saving a second walk)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        text = text.replace(_OPEN, "").replace(_CLOSE, "")
    return text


def number(value: Decimal) -> str:
    """The marker form of a Decimal, for :func:`dumps_prepared`."""
    return "\x00" + format_decimal(value) + "\x00"


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)

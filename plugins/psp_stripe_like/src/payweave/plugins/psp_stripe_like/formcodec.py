"""Stripe's v1 wire format: ``application/x-www-form-urlencoded`` with bracket notation.

Shared by the client (encoding requests) and the sandbox (decoding them), so both sides
speak exactly what stripe-python speaks (``stripe/_encode.py``):

* nested mappings become ``key[sub]=value`` (``metadata[order_id]=42``);
* sequences are always written with indexes (``expand[0]=latest_charge``,
  ``line_items[0][price_data][unit_amount]=1000``);
* booleans are ``true``/``false``; ``None`` values are left out;
* ``[`` and ``]`` stay literal (not ``%5B``/``%5D``).

Floats are refused: every amount on this wire is an integer number of minor units.
Decoding is schema-free: it yields nested ``dict`` objects whose leaves are strings; the
reader of a field knows whether it is a list and calls :func:`as_list` (or
:func:`listify` for a whole tree).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["FormDecodeError", "as_list", "decode", "encode", "encode_pairs", "listify"]


class FormDecodeError(ValueError):
    """A body that is not valid bracket-notation form data; ``param`` names the offending key."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _scalar(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError(f"{key}: floats are not allowed on the Stripe wire (use integer minor units)")
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise TypeError(f"{key}: {value} is not a whole number of minor units")
        return str(int(value))
    raise TypeError(f"{key}: cannot encode {type(value).__name__}")


def encode_pairs(params: Mapping[str, Any], prefix: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(key, value)`` pairs in bracket notation, in the mapping's order."""
    for raw_key, value in params.items():
        name = str(raw_key)
        if not name or "[" in name or "]" in name:
            raise ValueError(f"invalid parameter name {name!r}: names are non-empty and hold no brackets")
        key = name if prefix is None else f"{prefix}[{name}]"
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from encode_pairs(value, key)
        elif isinstance(value, list | tuple):
            yield from encode_pairs({str(i): v for i, v in enumerate(value)}, key)
        else:
            yield key, _scalar(value, key)


def encode(params: Mapping[str, Any]) -> str:
    """Encode ``params`` as a form body / query string (brackets left literal)."""
    return urlencode(list(encode_pairs(params)), safe="[]")


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise FormDecodeError(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def decode_pairs(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Build the nested tree from already unquoted ``(key, value)`` pairs.

    An empty segment (``expand[]=a``) appends to a list-shaped node. A key used both as a
    scalar and as a container is an error; a repeated scalar key keeps the last value.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        segments = _split_key(key)
        node = root
        path = segments[0]
        for depth, segment in enumerate(segments):
            if segment == "":
                if depth == 0:
                    raise FormDecodeError(f"Invalid parameter name: {key}", param=key)
                if any(not k.isdigit() for k in node):
                    raise FormDecodeError(f"Invalid array: {path}", param=path)
                segment = str(len(node))
            if depth:
                path = f"{path}[{segment}]"
            last = depth == len(segments) - 1
            if last:
                if isinstance(node.get(segment), dict):
                    raise FormDecodeError(f"Invalid hash: {path} is both a value and a hash", param=path)
                node[segment] = value
            else:
                child = node.setdefault(segment, {})
                if not isinstance(child, dict):
                    raise FormDecodeError(f"Invalid hash: {path} is both a value and a hash", param=path)
                node = child
    return root


def decode(body: str | bytes) -> dict[str, Any]:
    """Decode a form body or query string into a nested tree of dicts with string leaves."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormDecodeError("The request body is not valid UTF-8.") from exc
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormDecodeError(f"Malformed form data: {exc}") from exc
    return decode_pairs(pairs)


def _is_index_dict(value: Any) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    keys = list(value)
    return all(k.isdigit() and (k == "0" or not k.startswith("0")) for k in keys) and sorted(
        int(k) for k in keys
    ) == list(range(len(keys)))


def as_list(value: Any) -> list[Any] | None:
    """Interpret a decoded node as a list (``{"0": a, "1": b}`` -> ``[a, b]``); None if not one."""
    if isinstance(value, list):
        return value
    if _is_index_dict(value):
        return [value[str(i)] for i in range(len(value))]
    return None


def listify(tree: Any) -> Any:
    """Turn every dict whose keys are exactly ``0..n-1`` into a list, recursively."""
    if isinstance(tree, dict):
        items = as_list(tree)
        if items is not None:
            return [listify(v) for v in items]
        return {k: listify(v) for k, v in tree.items()}
    return tree

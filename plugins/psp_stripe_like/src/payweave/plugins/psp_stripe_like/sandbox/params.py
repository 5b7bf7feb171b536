"""Typed access to a decoded form tree, with Stripe's validation errors.

Every reader raises a 400 ``invalid_request_error`` that names the parameter in bracket
notation (``line_items[0][price_data][unit_amount]``), and :meth:`Params.only` refuses
unknown parameters the way Stripe does (``Received unknown parameter: foo``). These are
validation failures: an idempotent request that fails here stores nothing.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..formcodec import as_list
from .errors import invalid

_INT = re.compile(r"^-?\d+$")

MAX_AMOUNT = 99_999_999  # Stripe's eight-digit ceiling on amounts


class Params:
    def __init__(self, tree: dict[str, Any] | None, prefix: str | None = None):
        self.tree: dict[str, Any] = tree or {}
        self.prefix = prefix

    def name(self, key: str) -> str:
        return key if self.prefix is None else f"{self.prefix}[{key}]"

    def only(self, allowed: Iterable[str]) -> Params:
        allowed = set(allowed)
        for key in self.tree:
            if key not in allowed:
                raise invalid(f"Received unknown parameter: {self.name(key)}", param=self.name(key), code="parameter_unknown")
        return self

    def has(self, key: str) -> bool:
        return key in self.tree

    def _raw(self, key: str, required: bool) -> Any:
        value = self.tree.get(key)
        if value is None and required:
            raise invalid(f"Missing required param: {self.name(key)}.", param=self.name(key), code="parameter_missing")
        return value

    def str(self, key: str, *, required: bool = False, max_length: int | None = None) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {self.name(key)} must be a string, not a hash.", param=self.name(key))
        if value == "":
            if required:
                raise invalid(
                    f"You passed an empty string for '{self.name(key)}'. We assume empty values are an attempt "
                    f"to unset a parameter; however '{self.name(key)}' cannot be unset.",
                    param=self.name(key),
                    code="parameter_invalid_empty",
                )
            return None
        if max_length is not None and len(value) > max_length:
            raise invalid(
                f"Invalid string: {self.name(key)} must be at most {max_length} characters long.",
                param=self.name(key),
                code="parameter_invalid_string_too_long",
            )
        return value

    def int(self, key: str, *, required: bool = False, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.str(key, required=required)
        if value is None:
            return None
        if not _INT.match(value):
            raise invalid(f"Invalid integer: {value}", param=self.name(key), code="parameter_invalid_integer")
        number = int(value)
        if minimum is not None and number < minimum:
            raise invalid(
                f"This value must be greater than or equal to {minimum}.", param=self.name(key), code="parameter_invalid_integer"
            )
        if maximum is not None and number > maximum:
            raise invalid(
                f"This value must be less than or equal to {maximum}.", param=self.name(key), code="parameter_invalid_integer"
            )
        return number

    def amount(self, key: str, *, required: bool = False, minimum: int = 1) -> int | None:
        value = self.int(key, required=required, minimum=minimum)
        if value is not None and value > MAX_AMOUNT:
            raise invalid(
                f"Amount must be no more than {MAX_AMOUNT} minor units.", param=self.name(key), code="amount_too_large"
            )
        return value

    def bool(self, key: str, *, default: bool | None = None) -> bool | None:
        value = self.str(key)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=self.name(key))
        return value == "true"

    def enum(self, key: str, choices: Iterable[str], *, default: str | None = None, required: bool = False) -> str | None:
        choices = tuple(choices)
        value = self.str(key, required=required)
        if value is None:
            return default
        if value not in choices:
            listed = ", ".join(choices[:-1]) + (f", or {choices[-1]}" if len(choices) > 1 else choices[0])
            raise invalid(f"Invalid {self.name(key)}: must be one of {listed}", param=self.name(key))
        return value

    def sub(self, key: str, allowed: Iterable[str] | None = None) -> Params:
        value = self.tree.get(key)
        if value is None or value == "":
            return Params({}, self.name(key))
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {self.name(key)} must be a hash.", param=self.name(key))
        params = Params(value, self.name(key))
        return params.only(allowed) if allowed is not None else params

    def list(self, key: str) -> list[Any]:
        value = self.tree.get(key)
        if value is None or value == "":
            return []
        items = as_list(value)
        if items is None:
            raise invalid(f"Invalid array: {self.name(key)} must be an array.", param=self.name(key))
        return items

    def str_list(self, key: str) -> list[str]:
        items = self.list(key)
        for index, item in enumerate(items):
            if not isinstance(item, str) or item == "":
                raise invalid(f"Invalid string: {self.name(key)}[{index}]", param=f"{self.name(key)}[{index}]")
        return items

    def sub_list(self, key: str, allowed: Iterable[str]) -> list[Params]:
        allowed = tuple(allowed)
        result = []
        for index, item in enumerate(self.list(key)):
            name = f"{self.name(key)}[{index}]"
            if not isinstance(item, dict):
                raise invalid(f"Invalid object: {name} must be a hash.", param=name)
            result.append(Params(item, name).only(allowed))
        return result

    def metadata(self, key: str = "metadata") -> dict[str, str] | None:
        """Metadata hash (None when absent; ``metadata=`` unsets it: returns ``{}``)."""
        if key not in self.tree:
            return None
        value = self.tree[key]
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {self.name(key)} must be a hash.", param=self.name(key))
        if len(value) > 50:
            raise invalid("Metadata can have up to 50 keys.", param=self.name(key))
        result: dict[str, str] = {}
        for meta_key, meta_value in value.items():
            name = f"{self.name(key)}[{meta_key}]"
            if not isinstance(meta_value, str):
                raise invalid(f"Invalid string: {name} must be a string.", param=name)
            if len(meta_key) > 40:
                raise invalid(f"Metadata keys can be at most 40 characters ({meta_key!r}).", param=name)
            if len(meta_value) > 500:
                raise invalid(f"Metadata values can be at most 500 characters ({meta_key!r}).", param=name)
            result[meta_key] = meta_value
        return result

    def expand(self) -> list[str]:
        return self.str_list("expand")

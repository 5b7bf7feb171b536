"""Rows of the engine's operation protocol read and written without the ORM.

A :class:`Record` is one row of a mapped table read with a plain Core ``SELECT`` (no session, no
identity map, no instance state): the mapped class's column attributes as plain attributes, plus
the values as they were read. :func:`write_changes` sends the columns that changed since then as
one ``UPDATE`` on the given connection, in its database transaction, and takes the new values as
the read ones. A mapper's ``version_id_col`` is honoured exactly as the ORM's flush honours it:
the ``UPDATE`` matches the version the row was read with and sets the next one, and a row that
changed in between raises :class:`StaleDataError` (nothing written).

Why: a capture reads the transaction row once and writes it twice; loading it through the ORM
(identity map, instance state) and flushing it with the unit of work (change detection over every
object of the session, dependency sort, per-statement bookkeeping) cost several times the
statements themselves.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Connection, bindparam, inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .statements import Prepared


class RecordType:
    """How :class:`Record` s of one mapped class are read and written."""

    def __init__(self, mapped: type) -> None:
        mapper = inspect(mapped)
        self.mapped = mapped
        self.table = mapper.local_table
        props = list(mapper.column_attrs)
        #: attribute keys, in the order of :attr:`columns` (the order a SELECT must return them)
        self.keys: tuple[str, ...] = tuple(prop.key for prop in props)
        self.columns: tuple[Column[Any], ...] = tuple(self.table.c[prop.columns[0].name] for prop in props)
        self._column_of = {prop.key: prop.columns[0].name for prop in props}
        self.primary_key = tuple(mapper.get_property_by_column(col).key for col in mapper.primary_key)
        version = mapper.version_id_col
        self.version_key = mapper.get_property_by_column(version).key if version is not None else None
        self._updates: dict[frozenset[str], Prepared] = {}

    def record(self, values: Sequence[Any]) -> Record:
        """A record of a row read as :attr:`columns` (extra trailing values are ignored)."""
        return Record(self, tuple(values[: len(self.keys)]))

    def _update(self, changed: frozenset[str]) -> Prepared:
        stmt = self._updates.get(changed)
        if stmt is None:
            where = [self.table.c[self._column_of[key]] == bindparam(f"pk_{key}") for key in self.primary_key]
            values = {self._column_of[key]: bindparam(f"new_{key}") for key in sorted(changed)}
            if self.version_key is not None:
                column = self._column_of[self.version_key]
                where.append(self.table.c[column] == bindparam("old_version"))
                values[column] = bindparam("new_version")
            stmt = self._updates[changed] = Prepared(update(self.table).where(*where).values(values))
        return stmt


class Record:
    """One row read with plain Core (see the module docstring); attributes as the mapped class's."""

    def __init__(self, kind: RecordType, values: tuple[Any, ...]) -> None:
        self.__dict__.update(zip(kind.keys, values, strict=True))
        self.__dict__["_kind"] = kind
        self.__dict__["_read"] = values

    def changed(self) -> frozenset[str]:
        """Keys whose value differs from the one read or last written (the version excluded)."""
        kind: RecordType = self.__dict__["_kind"]
        values = self.__dict__
        return frozenset(
            key
            for key, old in zip(kind.keys, self.__dict__["_read"], strict=True)
            if key != kind.version_key and (new := values[key]) is not old and new != old
        )

    def __repr__(self) -> str:
        kind: RecordType = self.__dict__["_kind"]
        return f"<{kind.mapped.__name__} record {', '.join(f'{k}={self.__dict__[k]!r}' for k in kind.primary_key)}>"


def write_changes(conn: Connection | Session, row: Record) -> bool:
    """UPDATE what changed on ``row`` on ``conn`` (a session: its connection); False when nothing had."""
    changed = row.changed()
    if not changed:
        return False
    kind: RecordType = row.__dict__["_kind"]
    values = row.__dict__
    params: dict[str, Any] = {f"new_{key}": values[key] for key in changed}
    for key in kind.primary_key:
        params[f"pk_{key}"] = values[key]
    if kind.version_key is not None:
        old = values[kind.version_key]
        params["old_version"] = old
        params["new_version"] = old + 1
    if isinstance(conn, Session):
        conn = conn.connection()
    matched = kind._update(changed).rowcount(conn, params)
    if matched != 1:
        raise StaleDataError(
            f"UPDATE statement on table {kind.table.name!r} expected to update 1 row(s); {matched} were matched."
        )
    if kind.version_key is not None:
        values[kind.version_key] = params["new_version"]
    values["_read"] = tuple(values[key] for key in kind.keys)
    return True


__all__ = ["Record", "RecordType", "write_changes"]

"""Writing one known row without the ORM's unit of work (the engine's operation protocol).

:func:`write_changes` sends the columns of a *detached* mapped row that changed since it was
loaded (or last written) as one Core ``UPDATE`` on the session's connection, in the session's
database transaction, and marks them unchanged. A mapper's ``version_id_col`` is honoured exactly
as the ORM's flush honours it: the ``UPDATE`` matches the version the row was read with and sets
the next one, and a row that changed in between raises :class:`StaleDataError` (nothing written).

Why: a capture writes two rows twice; the unit of work (change detection over every mapped
object of the session, dependency sort, per-statement bookkeeping) cost several times the
``UPDATE`` itself.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, inspect, update
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import Update

_statements: dict[tuple[Mapper[Any], frozenset[str]], Update] = {}
_columns: dict[Mapper[Any], dict[str, str]] = {}


def _column_keys(mapper: Mapper[Any]) -> dict[str, str]:
    """attribute key -> column name of the mapper's own table."""
    keys = _columns.get(mapper)
    if keys is None:
        keys = _columns[mapper] = {prop.key: prop.columns[0].name for prop in mapper.column_attrs}
    return keys


def _statement(mapper: Mapper[Any], changed: frozenset[str]) -> Update:
    stmt = _statements.get((mapper, changed))
    if stmt is None:
        table = mapper.local_table
        columns = _column_keys(mapper)
        where = [table.c[col.name] == bindparam(f"pk_{col.name}") for col in mapper.primary_key]
        values = {columns[key]: bindparam(f"new_{columns[key]}") for key in changed}
        version = mapper.version_id_col
        if version is not None:
            where.append(table.c[version.name] == bindparam("old_version"))
            values[version.name] = bindparam("new_version")
        stmt = _statements[(mapper, changed)] = update(table).where(*where).values(values)
    return stmt


def write_changes(session: Session, row: Any) -> bool:
    """UPDATE what changed on ``row`` (detached: not in ``session``); False when nothing had."""
    state = inspect(row)
    assert state.session is None, "write_changes takes a detached row; the session would flush it again"
    mapper = state.mapper
    columns = _column_keys(mapper)
    version = mapper.version_id_col
    version_key = mapper.get_property_by_column(version).key if version is not None else None
    unmodified = state.unmodified
    changed = frozenset(key for key in columns if key not in unmodified and key != version_key)
    if not changed:
        return False
    params: dict[str, Any] = {f"new_{columns[key]}": getattr(row, key) for key in changed}
    for col in mapper.primary_key:
        params[f"pk_{col.name}"] = getattr(row, mapper.get_property_by_column(col).key)
    if version_key is not None:
        old = getattr(row, version_key)
        params["old_version"] = old
        params["new_version"] = old + 1
    result = session.connection().execute(_statement(mapper, changed), params)
    if result.rowcount != 1:
        raise StaleDataError(
            f"UPDATE statement on table {mapper.local_table.name!r} expected to update 1 row(s); "
            f"{result.rowcount} were matched."
        )
    for key in changed:
        set_committed_value(row, key, getattr(row, key))
    if version_key is not None:
        set_committed_value(row, version_key, params["new_version"])
    return True


__all__ = ["write_changes"]

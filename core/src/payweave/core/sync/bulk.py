"""Inserting many new rows of one table at once (the initial sync stores every record this way).

SQLAlchemy compiles the ``INSERT`` once per table, column list and dialect; each row is then
turned into the driver's parameters directly (a tuple or a dict, as the dialect's paramstyle
wants) with SQLAlchemy's own bind processor of each column for that dialect (the UTC and SQLite
text form of datetimes, dates, JSON), and the rows go to the driver's ``executemany`` through
:meth:`Connection.exec_driver_sql` (so connection events and the session's transaction apply
as to any statement).

Why: a Core ``session.execute(insert(table), rows)`` builds a parameter dict per row through
the compiler's generic machinery, which cost more than SQLite spent storing the row (about a
fifth of the initial sync's CPU for invoices and their lines).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


_NOTHING = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: column names in the order the statement binds them (positional paramstyles) or None
    order: tuple[str, ...] | None
    #: (column, bind processor) for the columns whose type converts values for this dialect
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    #: the same by position in ``order`` (positional paramstyles)
    positions: tuple[tuple[int, Callable[[Any], Any]], ...]


class BulkInsert:
    """``BulkInsert(table, columns)(session, rows)``: insert ``rows`` (mappings with exactly
    ``columns`` as keys: a missing or an extra key is an error, never a value left out) in the
    session's transaction."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        unknown = [c for c in columns if c not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
        self.table = table
        self.columns = tuple(columns)
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                statement = insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
                if statement.escaped_bind_names:  # pragma: no cover - plain column names need no escaping
                    raise ValueError(f"{self.table.name}: bind names need escaping; use a Core insert")
                order = tuple(statement.positiontup or ()) if statement.positional else None
                if order is not None and set(order) != set(self.columns):  # pragma: no cover
                    raise ValueError(f"{self.table.name}: the statement binds {order}, not {self.columns}")
                processors = []
                for name in self.columns:
                    processor = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                    if processor is not None:
                        processors.append((name, processor))
                positions = tuple((order.index(n), p) for n, p in processors) if order is not None else ()
                compiled = self._compiled[key] = _Compiled(statement.string, order, tuple(processors), positions)
        return compiled

    def __call__(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        compiled = self._for(connection.dialect)
        width = len(self.columns)
        for row in rows:
            if len(row) != width:
                raise ValueError(f"{self.table.name}: a row has columns {sorted(row)}, expected {sorted(self.columns)}")
        params: list[Any] = []
        # a column often holds the same object in every row (the run's ``now``, a date): each
        # processor remembers its last input and output
        last_in: list[Any] = [_NOTHING] * len(compiled.processors)
        last_out: list[Any] = [None] * len(compiled.processors)
        if compiled.order is not None:
            order, positions = compiled.order, compiled.positions
            for row in rows:
                values = [row[c] for c in order]
                for k, (i, processor) in enumerate(positions):
                    value = values[i]
                    if value is not last_in[k]:
                        last_in[k], last_out[k] = value, processor(value)
                    values[i] = last_out[k]
                params.append(tuple(values))
        else:
            columns, processors = self.columns, compiled.processors
            for row in rows:
                converted = {c: row[c] for c in columns}
                for k, (name, processor) in enumerate(processors):
                    value = converted[name]
                    if value is not last_in[k]:
                        last_in[k], last_out[k] = value, processor(value)
                    converted[name] = last_out[k]
                params.append(converted)
        connection.exec_driver_sql(compiled.sql, params)


__all__ = ["BulkInsert"]

"""Hot-path writes compiled once per dialect and sent as driver SQL.

``Connection.execute(statement)`` costs several times the database work of a short statement:
a cache key is generated for the statement on every call, the compiled form looked up, and an
execution context built from it (parameter dictionaries, processor lists). :class:`Prepared`
does that work once per dialect: it keeps the SQL string, the order of its parameters and their
bind processors, and the result processors of the columns it returns, then runs the statement
with :meth:`Connection.exec_driver_sql`. That is still SQLAlchemy's execution path on the same
connection and transaction: events (``before_cursor_execute``, ``do_execute``), error wrapping
(``sqlalchemy.exc.DBAPIError`` and subclasses) and disconnect handling behave as for any other
statement. Values go through the column types' own processors (``UtcDateTime``, JSON, booleans),
so what is written and read is exactly what the ORM writes and reads.

SELECTs are the exception: ``Connection.execute`` keeps their result metadata with the compiled
form, which driver SQL would rebuild per call at a higher cost than the cache key's; so
:meth:`Prepared.all` and :meth:`Prepared.first` run them that way.

Statements must be plain: bind parameters with simple names (``bindparam("x")`` or a column's
key in INSERT values), no expanding IN, no literal rendering.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.sql.elements import ClauseElement

_Processor = Callable[[Any], Any] | None
_MISSING = object()


class _Form:
    """A statement compiled for one dialect."""

    __slots__ = ("sql", "positional", "binds", "results")

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: list[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            # Python-side column defaults are computed by SQLAlchemy's execution context, not here
            raise ValueError(f"Prepared statements must name every column that has a Python-side default: {compiled}")
        self.sql = str(compiled)
        self.positional = bool(dialect.positional)
        names = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        #: (rendered name, parameter key, bind processor, value when the parameters do not name it)
        self.binds: list[tuple[str, str, _Processor, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            self.binds.append((name, bind.key, bind.type.dialect_impl(dialect).bind_processor(dialect),
                               _MISSING if bind.required else bind.effective_value))
        self.results: list[_Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "exported_columns", ())
        ]

    def parameters(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for _name, key, process, default in self.binds:
            value = params[key] if key in params or default is _MISSING else default
            # None too goes through the processor, as SQLAlchemy sends it (JSON stores None as 'null')
            values.append(value if process is None else process(value))
        if self.positional:
            return tuple(values)
        return {bind[0]: value for bind, value in zip(self.binds, values, strict=True)}

    def row(self, raw: Any) -> tuple[Any, ...]:
        return tuple(value if process is None else process(value) for process, value in zip(self.results, raw, strict=True))


class Prepared:
    """A Core INSERT or UPDATE compiled once per dialect (see the module docstring); a SELECT, run
    as ``Connection.execute`` runs it (see :meth:`all`), with the same calls.

    ``column_keys``: for an INSERT or UPDATE whose values come from the parameters, the keys
    given on every call (as ``Connection.execute`` would derive from the first parameter set).
    """

    __slots__ = ("statement", "column_keys", "_forms")

    def __init__(self, statement: ClauseElement, column_keys: list[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = column_keys
        self._forms: weakref.WeakKeyDictionary[Dialect, _Form] = weakref.WeakKeyDictionary()

    def _form(self, dialect: Dialect) -> _Form:
        form = self._forms.get(dialect)
        if form is None:
            form = self._forms[dialect] = _Form(self.statement, dialect, self.column_keys)
        return form

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> CursorResult[Any]:
        """Run the statement; the result as ``exec_driver_sql`` returns it (unprocessed rows)."""
        form = self._form(conn.dialect)
        return conn.exec_driver_sql(form.sql, form.parameters(params))

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a SELECT, each value through its column type's result processor.

        A SELECT goes through ``Connection.execute`` (SQLAlchemy's compiled cache): a cache hit
        also reuses the result's column metadata, which driver SQL rebuilds on every call at a
        cost above the cache key's."""
        return [tuple(row) for row in conn.execute(self.statement, params)]

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a SELECT (see :meth:`all`), or None."""
        row = conn.execute(self.statement, params).first()
        return None if row is None else tuple(row)

    def returning(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run an INSERT/UPDATE ... RETURNING of one row: that row, processed."""
        form = self._form(conn.dialect)
        result = conn.exec_driver_sql(form.sql, form.parameters(params))
        raw = result.fetchone()
        result.close()
        assert raw is not None, "RETURNING gave no row"
        return form.row(raw)

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a DML statement; the number of rows it matched."""
        form = self._form(conn.dialect)
        return conn.exec_driver_sql(form.sql, form.parameters(params)).rowcount


__all__ = ["Prepared"]

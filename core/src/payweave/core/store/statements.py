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

:class:`PreparedRows` does the same for an INSERT of many rows in one statement (multi-row
``VALUES``, e.g. with ``ON CONFLICT DO NOTHING RETURNING``): compiled once per dialect and row
count, the rows sent in statements of at most :data:`ROWS_PER_STATEMENT` rows (and
:data:`MAX_PARAMETERS` parameters).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table, bindparam
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


def _json_text(value: Any) -> str:
    """A :class:`PreparedRows` value given as JSON text: sent as it is (the column type would
    serialise the text again, as a JSON string)."""
    if not isinstance(value, str):
        raise TypeError(f"expected JSON text, not {type(value).__name__}")
    return value


#: rows per statement of :class:`PreparedRows`, at most; fewer where the columns would bind more
#: than :data:`MAX_PARAMETERS`
ROWS_PER_STATEMENT = 64
#: parameters of one statement, at most: the smallest limit of a SQLite build (PostgreSQL's is 65,535)
MAX_PARAMETERS = 999


class PreparedRows:
    """An INSERT of many rows per statement (multi-row ``VALUES``), compiled once per dialect and
    row count; each value goes through its column type's bind processor, and the statement runs
    through :meth:`Connection.exec_driver_sql` (see the module docstring).

    ``columns``: the columns of ``table`` every row gives, no more and no fewer. ``build(dialect_name,
    values)`` makes the statement from ``values``: one dict per row, of bind parameters (typed as
    their columns) by column name: ``insert(table).values(values)`` plus whatever the dialect's
    insert adds, such as ``on_conflict_do_nothing().returning(...)``. ``json_text``: JSON columns
    whose values the rows give as JSON text already (``model_dump_json()`` of a pydantic model,
    which costs less than dumping to Python and having the column type serialise that), sent as
    they are; a value that is not a ``str`` there is refused.
    """

    __slots__ = ("table", "build", "columns", "json_text", "per_statement", "_plans")

    def __init__(self, table: Table, columns: Sequence[str], build: Callable[[str, list[dict[str, Any]]], ClauseElement],
                 *, json_text: Sequence[str] = ()) -> None:
        unknown = [c for c in columns if c not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
        not_json = [c for c in json_text if c not in columns or not isinstance(table.c[c].type, JSON)]
        if not_json:
            raise ValueError(f"{table.name}: {', '.join(not_json)} is not a JSON column of the rows")
        self.table = table
        self.build = build
        self.columns = tuple(columns)
        self.json_text = frozenset(json_text)
        self.per_statement = max(1, min(ROWS_PER_STATEMENT, MAX_PARAMETERS // len(self.columns)))
        self._plans: weakref.WeakKeyDictionary[Dialect, dict[int, tuple[_Form, list[tuple[int, str, _Processor]]]]] = (
            weakref.WeakKeyDictionary())

    def _plan(self, dialect: Dialect, n: int) -> tuple[_Form, list[tuple[int, str, _Processor]]]:
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans[dialect] = {}
        plan = plans.get(n)
        if plan is None:
            values = [{c: bindparam(f"r{i}_{c}", type_=self.table.c[c].type) for c in self.columns} for i in range(n)]
            form = _Form(self.build(dialect.name, values), dialect, None)
            where = {f"r{i}_{c}": (i, c) for i in range(n) for c in self.columns}
            if {key for _name, key, _p, _d in form.binds} != set(where):  # pragma: no cover - a statement with other binds
                raise ValueError(f"PreparedRows: the statement binds {[b[1] for b in form.binds]}, not the rows' columns")
            plan = plans[n] = (form, [(*where[key], _json_text if where[key][1] in self.json_text else process)
                                      for _name, key, process, _d in form.binds])
        return plan

    def returning(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert ``rows``; every row the statements returned, processed (a row the database
        skipped, e.g. a conflict that does nothing, returns none)."""
        out: list[tuple[Any, ...]] = []
        width = len(self.columns)
        for start in range(0, len(rows), self.per_statement):
            chunk = rows[start:start + self.per_statement]
            for row in chunk:
                if len(row) != width:
                    raise ValueError(f"a row has columns {sorted(row)}, expected {sorted(self.columns)}")
            form, plan = self._plan(conn.dialect, len(chunk))
            # None too goes through the processor, as SQLAlchemy sends it (JSON stores None as 'null')
            values = [chunk[i][c] if process is None else process(chunk[i][c]) for i, c, process in plan]
            params: Any = tuple(values) if form.positional else {
                bind[0]: value for bind, value in zip(form.binds, values, strict=True)}
            out.extend(form.row(raw) for raw in conn.exec_driver_sql(form.sql, params).fetchall())
        return out


__all__ = ["MAX_PARAMETERS", "ROWS_PER_STATEMENT", "Prepared", "PreparedRows"]

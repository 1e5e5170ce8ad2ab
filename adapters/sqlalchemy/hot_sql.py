"""The messaging tables' hot-path statements, compiled once for SQLite and run on the DBAPI
cursor of a ``LoopConnection``.

Every settled order runs the inbox check and record, the outbox records, and the relay's
``due`` read and removal many times. Through ``Connection.execute`` each costs about 20 µs of
SQLAlchemy's Python around a SQLite call of a few µs (cache key, compiled-cache lookup,
execution context, result wrapping; ADR 17). A ``HotStatement`` keeps its SQL text and the
order of its parameters, and ``LoopConnection`` hands both straight to ``sqlite3``, still
inside SQLAlchemy's transaction (commit, rollback and savepoints are SQLAlchemy's),
announced to ``before_cursor_execute`` listeners (the statement counter) and with errors
wrapped as SQLAlchemy's (``IntegrityError`` and the others). Elsewhere (PostgreSQL, the
async engine) the same statement runs through SQLAlchemy as before.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.sql import Executable

from adapters.sqlalchemy.loop_connection import LoopConnection

#: Parameters of one execution: one mapping, or a list of them (one round trip, executemany).
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]]

#: Where each positional ``?`` takes its value from: a parameter's name, and the index in its
#: list for an expanding one (``IN``), ``None`` otherwise.
_Order = tuple[tuple[str, int | None], ...]

_DIALECT = SQLiteDialect_pysqlite()
#: At most this many renderings of one statement's ``IN`` lists are kept (the relay's lists
#: are at most its concurrency long, so this bounds nothing in practice, only memory).
_KEPT_TEXTS = 256


class HotStatement:
    """One statement of the hot path: SQLAlchemy's, and its SQLite text once compiled."""

    __slots__ = ("_compiled", "_constants", "_expanding", "_texts", "is_dml", "row", "statement")

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        """``keys``: the columns an ``INSERT`` without ``values()`` is given, in the order its
        rows carry them."""
        self.statement = statement
        self.is_dml: bool = bool(getattr(statement, "is_dml", False))
        self._compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=_DIALECT, column_keys=list(keys) if keys is not None else None
        )
        self._expanding: tuple[str, ...] = tuple(
            name
            for name, parameter in self._compiled.binds.items()
            if parameter.expanding and name in (self._compiled.positiontup or ())
        )
        binds = self._compiled.binds
        #: Values SQLAlchemy bound itself (``OFFSET 0`` after a ``LIMIT``).
        self._constants: dict[str, Any] = {
            name: binds[name].effective_value
            for name in self._compiled.positiontup or ()
            if name in binds and not binds[name].required
        }
        #: SQL text and parameter order, by the lengths of the expanding parameters' lists.
        self._texts: dict[tuple[int, ...], tuple[str, _Order]] = {}
        if not self._expanding:
            order = tuple((name, None) for name in self._compiled.positiontup or ())
            self._texts[()] = (self._compiled.string, order)
        #: The class of the rows a SELECT returns (named fields, as SQLAlchemy's rows have).
        self.row: type[tuple[Any, ...]] | None = None

    def text(self, parameters: Mapping[str, Any]) -> tuple[str, _Order]:
        """The SQL to run with ``parameters``, and where each ``?`` takes its value."""
        lengths = tuple(len(parameters[name]) for name in self._expanding)
        found = self._texts.get(lengths)
        if found is None:
            found = self._expand(lengths)
            if len(self._texts) < _KEPT_TEXTS:
                self._texts[lengths] = found
        return found

    def _expand(self, lengths: tuple[int, ...]) -> tuple[str, _Order]:
        # SQLAlchemy renders an ``IN`` of n values (and of none) once per n; remembered, the
        # relay's few batch sizes cost a dict lookup.
        stand_ins: dict[str, Any] = {name: 0 for name in self._compiled.positiontup or ()}
        stand_ins.update(
            {name: list(range(n)) for name, n in zip(self._expanding, lengths, strict=True)}
        )
        expanded = self._compiled.construct_expanded_state(stand_ins)
        owner = {
            key: (name, index)
            for name, keys in expanded.parameter_expansion.items()
            for index, key in enumerate(keys)
        }
        order = tuple(owner.get(key, (key, None)) for key in expanded.positiontup or ())
        return expanded.statement, order

    def prepare(self, parameters: Parameters) -> tuple[str, Any, bool]:
        """The SQL text, its positional parameters (a list of tuples for a list of rows) and
        whether it runs once per row (``executemany``)."""
        if self._constants:
            if not isinstance(parameters, Mapping):
                parameters = [{**self._constants, **row} for row in parameters]
            else:
                parameters = {**self._constants, **parameters}
        if isinstance(parameters, Mapping):
            sql, order = self.text(parameters)
            return sql, positional(order, parameters), False
        sql, order = self.text(parameters[0])
        return sql, [positional(order, row) for row in parameters], True

    def rows_of(self, description: Sequence[Any], values: Sequence[Any]) -> list[Any]:
        """The DBAPI's tuples as rows with named fields."""
        if self.row is None:
            self.row = namedtuple("Row", [column[0] for column in description])  # type: ignore[misc]
        row = self.row
        return [row._make(value) for value in values]  # type: ignore[attr-defined]


def positional(order: _Order, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
    """One mapping of parameters as the positional tuple ``sqlite3`` takes."""
    return tuple(
        parameters[name] if index is None else parameters[name][index] for name, index in order
    )


async def fetch(connection: Any, hot: HotStatement, parameters: Mapping[str, Any]) -> list[Any]:
    """The rows ``hot`` selects: on the DBAPI cursor of a ``LoopConnection``, through
    SQLAlchemy elsewhere."""
    if isinstance(connection, LoopConnection):
        found: list[Any] = connection.run_hot(hot, parameters, rows=True)
        return found
    return list((await connection.execute(hot.statement, parameters)).all())


async def write(connection: Any, hot: HotStatement, parameters: Parameters) -> int:
    """Run a DML statement (once, or for each of a list of rows) and return its rowcount."""
    if isinstance(connection, LoopConnection):
        return int(connection.run_hot(hot, parameters, rows=False))
    return int((await connection.execute(hot.statement, parameters)).rowcount)

"""Statements of the hot path compiled once and run on the driver's connection, inside
SQLAlchemy's transaction.

Every settled order runs the inbox check and record, the outbox records, the relay's ``due``
read and removal, and the modules' own reads and writes many times. Through
``Connection.execute`` each costs about 20 µs of SQLAlchemy's Python around a SQLite call of a
few µs (cache key, compiled-cache lookup, execution context, result wrapping; ADR 17), and on
PostgreSQL the async engine adds a greenlet switch and its cursor adapter to that. A
``HotStatement`` keeps its SQL text, the order of its parameters and its types' conversions;
``LoopConnection`` hands them straight to ``sqlite3`` and ``PgConnection`` to ``asyncpg``,
still inside SQLAlchemy's transaction (begin, commit, rollback and savepoints are
SQLAlchemy's), announced to ``before_cursor_execute`` listeners and with errors wrapped as
SQLAlchemy's (``IntegrityError`` and the others). When the statement counter is on, it is
called directly instead, and it alone: SQLAlchemy's event dispatch cost more than the count.

Nothing calls this module but those two connections: ``hot_statement`` recognises a
statement object it has been given before (the messaging tables' stores and the
repositories build theirs once) and compiles it on its second use; a
statement built per call, or one SQLAlchemy must do more for than bind values and convert
types (Python-side column defaults, ``RETURNING`` over many rows, duplicate result names),
keeps going through SQLAlchemy.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql import Executable, TableClause
from sqlalchemy.sql.util import find_tables

#: Parameters of one execution: one mapping, or a list of them (one round trip, executemany).
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]]

#: Where each positional ``?`` takes its value from: a parameter's name, its index in its list
#: for an expanding one (``IN``), ``None`` otherwise, and its type's conversion, if any.
_Order = tuple[tuple[str, int | None, Callable[[Any], Any] | None], ...]

#: The dialect of ``LoopConnection``'s statements (``PgConnection`` gives its engine's).
SQLITE = SQLiteDialect_pysqlite()
#: At most this many renderings of one statement's ``IN`` lists are kept (the relay's lists
#: are at most its concurrency long, so this bounds nothing in practice, only memory).
_KEPT_TEXTS = 256


class NotHot(Exception):
    """The statement needs more of SQLAlchemy than a compiled text and its conversions."""


class HotStatement:
    """One statement of the hot path: SQLAlchemy's, and its text in one dialect once compiled."""

    __slots__ = (
        "_columns",
        "_compiled",
        "_constants",
        "_converters",
        "_dialect",
        "_expanding",
        "_fields",
        "_processors",
        "_texts",
        "counts_only",
        "is_dml",
        "reads",
        "row",
        "statement",
    )

    def __init__(
        self, statement: Executable, keys: Sequence[str] | None = None, dialect: Dialect = SQLITE
    ) -> None:
        """``keys``: the columns an ``INSERT`` without ``values()`` is given, in the order its
        rows carry them. ``NotHot`` if SQLAlchemy must run it (see the module's doc)."""
        self.statement = statement
        self._dialect = dialect
        self.is_dml: bool = bool(getattr(statement, "is_dml", False))
        #: The tables a SELECT reads, if all are known: a held write of another table may
        #: go after it (``held_writes``).
        self.reads: frozenset[str] = (
            _tables_read(statement) if getattr(statement, "is_select", False) else frozenset()
        )
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        self._compiled = compiled
        names = compiled.positiontup or ()
        binds = compiled.binds
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise NotHot("Python-side column defaults")
        if compiled.literal_execute_params:
            raise NotHot("values rendered into the SQL at execution")
        if any(binds[name].callable is not None for name in names if name in binds):
            raise NotHot("a bound value computed at execution")
        self._expanding: tuple[str, ...] = tuple(
            name for name, parameter in binds.items() if parameter.expanding and name in names
        )
        #: Each parameter's type conversion (SQLite stores booleans as integers...).
        self._processors: dict[str, Callable[[Any], Any]] = {
            name: processor
            for name, processor in compiled._bind_processors.items()
            if name in names and processor is not None
        }
        if any(name in self._processors for name in self._expanding):
            raise NotHot("a converted value in an IN list")
        #: Values SQLAlchemy bound itself (``OFFSET 0`` after a ``LIMIT``).
        self._constants: dict[str, Any] = {
            name: binds[name].effective_value
            for name in names
            if name in binds and not binds[name].required
        }
        #: SQL text and parameter order, by the lengths of the expanding parameters' lists.
        self._texts: dict[tuple[int, ...], tuple[str, _Order]] = {}
        if not self._expanding:
            self._texts[()] = (compiled.string, self._order([(name, None) for name in names]))
        columns = compiled._result_columns or []
        self._columns = columns
        #: DML without ``RETURNING``: all it answers is how many rows it touched. (A textual
        #: SELECT has no known columns either: it is no DML.)
        self.counts_only: bool = self.is_dml and not columns
        #: The rows' field names, as SQLAlchemy's rows name them.
        self._fields: tuple[str, ...] | None = None
        if columns:
            fields = tuple(str(column[0]) for column in columns)
            if len(set(fields)) != len(fields) or not all(
                name.isidentifier() and not name.startswith("_") for name in fields
            ):
                raise NotHot("result columns without distinct names")
            self._fields = fields
        #: Each result column's conversion, known once the driver has described the columns
        #: (PostgreSQL's converters depend on the column's type as the server sends it).
        self._converters: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
        #: The class of the rows a SELECT returns (named fields, as SQLAlchemy's rows have).
        self.row: type[tuple[Any, ...]] | None = None

    def _order(self, names: Sequence[tuple[str, int | None]]) -> _Order:
        return tuple((name, index, self._processors.get(name)) for name, index in names)

    def text(self, parameters: Mapping[str, Any]) -> tuple[str, _Order]:
        """The SQL to run with ``parameters``, and where each ``?`` takes its value."""
        expanding = self._expanding
        # Most statements have no ``IN`` list: no generator to build for them.
        lengths = tuple([len(parameters[name]) for name in expanding]) if expanding else ()
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
        names = [owner.get(key, (key, None)) for key in expanded.positiontup or ()]
        return expanded.statement, self._order(names)

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

    def _describe(self, description: Sequence[Any]) -> type[tuple[Any, ...]]:
        # ``description``: the DBAPI's (name, type code...) per column, or asyncpg's
        # attributes (name, type with its oid).
        fields = self._fields or tuple(column[0] for column in description)
        converters = []
        for index, column in enumerate(self._columns):
            code = description[index][1] if index < len(description) else None
            code = getattr(code, "oid", code)
            processor = column[3]._cached_result_processor(self._dialect, code)
            if processor is not None:
                converters.append((index, processor))
        self._converters = tuple(converters)
        # A textual statement's columns are named by the server ("?column?" for an
        # expression): such names get positional ones, where SQLAlchemy's rows keep them
        # for ``_mapping`` only; indexes and ``scalar`` mean the same.
        row = self.row = namedtuple("Row", fields, rename=True)
        return row

    def rows_of(self, description: Sequence[Any], values: Sequence[Any]) -> list[Any]:
        """The driver's rows as rows with named fields, their values converted as
        SQLAlchemy's types convert them."""
        row = self.row
        if row is None:
            row = self._describe(description)
        make = row._make  # type: ignore[attr-defined]
        converters = self._converters
        if not converters:
            return [make(value) for value in values]
        rows = []
        for value in values:
            converted = list(value)
            for index, convert in converters:
                converted[index] = convert(converted[index])
            rows.append(make(converted))
        return rows


def _tables_read(statement: Executable) -> frozenset[str]:
    """The names of the tables ``statement`` reads; none if one of them is not a table."""
    names = set()
    for found in find_tables(statement, check_columns=True, include_aliases=True):
        if found is None:
            continue  # a column of no table (a bound value, a function's result)
        while not isinstance(found, TableClause):
            found = getattr(found, "element", None)
            if found is None:
                return frozenset()
        names.add(found.name)
    return frozenset(names)


def positional(order: _Order, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
    """One mapping of parameters as the positional tuple ``sqlite3`` takes."""
    values = []
    for name, index, convert in order:
        value = parameters[name] if index is None else parameters[name][index]
        values.append(value if convert is None else convert(value))
    return tuple(values)


class HotResult:
    """The result of a statement run on the cursor: the part of SQLAlchemy's ``Result`` the
    repositories use (rows by name, ``first``, ``all``, scalars, ``rowcount``)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise _no_single_row(len(self._rows))
        return self._rows[0]

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise _no_single_row(len(self._rows))
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]


def _no_single_row(count: int) -> Exception:
    if count == 0:
        return NoResultFound("No row was found when one was required")
    return MultipleResultsFound("Multiple rows were found when exactly one was required")


#: Statements seen so far, by ``id`` (with the statement itself, so that a reused id of a
#: statement since collected is not mistaken for it): ``_ONCE`` after the first use, then
#: the compiled ``HotStatement``, or ``None`` if SQLAlchemy must run it.
_ONCE: Any = object()
_KNOWN: dict[tuple[int, tuple[str, ...] | None, str], tuple[Any, Any]] = {}
#: Statements built per call would fill it: past this many it starts again.
_KNOWN_AT_MOST = 2048


def hot_statement(
    statement: Any, parameters: Any, dialect: Dialect = SQLITE
) -> HotStatement | None:
    """The compiled form of ``statement`` in ``dialect`` if it was used before and can run on
    the driver's connection; ``None``: let SQLAlchemy run it."""
    keys: tuple[str, ...] | None = None
    if getattr(statement, "is_insert", False) and not (
        statement._values or statement._multi_values
    ):
        # An INSERT without values() is compiled for the columns its parameters name.
        first = parameters if isinstance(parameters, Mapping) else (parameters or [None])[0]
        if not isinstance(first, Mapping):
            return None
        keys = tuple(first)
    key = (id(statement), keys, dialect.name)
    known = _KNOWN.get(key)
    if known is None or known[0] is not statement:
        if len(_KNOWN) >= _KNOWN_AT_MOST:
            _KNOWN.clear()
        _KNOWN[key] = (statement, _ONCE)
        return None
    hot = known[1]
    if hot is _ONCE:
        try:
            hot = HotStatement(statement, keys, dialect)
        except NotHot:
            hot = None
        _KNOWN[key] = (statement, hot)
    return hot  # type: ignore[no-any-return]

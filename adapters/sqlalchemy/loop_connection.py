"""SQLAlchemy's sync ``Connection`` on pysqlite, called from coroutines on the loop's thread.

With the inline driver (``inline_sqlite``) every statement already runs on the loop's thread;
what SQLAlchemy's async layer still adds is a greenlet switch and an adapter cursor per call,
about a quarter of a unit of work's time (246 µs against 188 µs for connect, SELECT, UPDATE,
commit; ADR 17). The storage of the order flow (units of work, the relay's outbox store, the
short writing transactions) therefore talks to a ``LoopConnection``: the few methods of an
``AsyncConnection`` it calls, each a plain call of the sync ``Connection``.

Blocking the loop is as safe here as it is for the inline driver: writers of this process
queue on the ``WriterGate`` before they write, WAL readers never wait, and another process's
write lock is waited for at most ``BUSY_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from typing import Any

from sqlalchemy.engine import Connection, Engine, Transaction
from sqlalchemy.exc import DBAPIError

from adapters.sqlalchemy.hot_sql import HotResult, HotStatement, Parameters, hot_statement
from adapters.sqlalchemy.statement_counts import Announce


class LoopTransaction:
    """What ``LoopConnection.begin`` returns: awaited or entered, like an ``AsyncTransaction``."""

    __slots__ = ("_begin", "_transaction")

    def __init__(self, begin: Callable[[], Transaction]) -> None:
        self._begin = begin
        self._transaction: Transaction | None = None

    def __await__(self) -> Generator[Any, None, LoopTransaction]:
        self._transaction = self._begin()
        return self
        yield  # a generator that never suspends: ``await`` costs no trip through the loop

    async def __aenter__(self) -> LoopTransaction:
        self._transaction = self._begin()
        return self

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        assert self._transaction is not None
        # Commits, or rolls back (the savepoint only, when nested) and lets the error through.
        self._transaction.__exit__(kind, error, traceback)


class KeptConnections:
    """Sync connections kept open between units of work, each ready for the next.

    Checking a connection out of SQLAlchemy's pool and back in (events, the reset's
    rollback, the fairy's bookkeeping) cost about a tenth of an order's CPU, twenty times
    an order. A unit of work takes a connection kept here and gives it back, rolled back if
    it was left in a transaction; SQLAlchemy's pool stays underneath for the rest (its
    limits, closing on dispose).
    """

    __slots__ = ("_engine", "_idle", "_keep", "announce")

    def __init__(self, engine: Engine, keep: int) -> None:
        self._engine = engine
        self._idle: list[Connection] = []
        self._keep = keep
        #: The statement counter, when it is on (``statement_counts``).
        self.announce: Announce | None = None

    def take(self) -> Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed and not connection.invalidated:
                return connection
        return self._engine.connect()

    def give_back(self, connection: Connection) -> None:
        if connection.closed or connection.invalidated:
            return
        try:
            if connection.in_transaction():
                connection.rollback()  # what the pool's reset would do
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        if len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Close the connections kept (before the engine is disposed)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class LoopConnection:
    """An ``AsyncConnection``-shaped facade over a checked-out sync ``Connection``.

    Awaiting it, or entering it, returns it: ``database.connect()`` is used as
    ``engine.connect()`` is. Results are sync ``Result``s, as an ``AsyncConnection``'s are.
    """

    __slots__ = ("_announce", "_kept", "sync_connection")

    def __init__(self, kept: KeptConnections) -> None:
        self._kept: KeptConnections | None = kept
        self._announce = kept.announce
        self.sync_connection: Connection = kept.take()

    def __await__(self) -> Generator[Any, None, LoopConnection]:
        return self
        yield  # never suspends

    async def __aenter__(self) -> LoopConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        """As ``Connection.execute``; on the cursor (``hot_sql``) for a statement used before."""
        hot = None if kwargs else hot_statement(statement, parameters)
        if hot is None:
            return self.sync_connection.execute(statement, parameters, **kwargs)
        return self.run_hot(hot, parameters if parameters is not None else {})

    async def scalar(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        hot = None if kwargs else hot_statement(statement, parameters)
        if hot is None:
            return self.sync_connection.scalar(statement, parameters, **kwargs)
        return self.run_hot(hot, parameters if parameters is not None else {}).scalar()

    def begin(self) -> LoopTransaction:
        return LoopTransaction(self.sync_connection.begin)

    def begin_nested(self) -> LoopTransaction:
        return LoopTransaction(self.sync_connection.begin_nested)

    async def commit(self) -> None:
        self.sync_connection.commit()

    async def rollback(self) -> None:
        self.sync_connection.rollback()

    async def close(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.give_back(self.sync_connection)

    async def run_sync(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return function(self.sync_connection, *args, **kwargs)

    def run_hot(self, hot: HotStatement, parameters: Parameters) -> HotResult:
        """Run a statement compiled once (``hot_sql``) on this connection's DBAPI cursor."""
        connection = self.sync_connection
        if not connection.in_transaction():
            connection.begin()  # as SQLAlchemy's autobegin: the same transaction boundaries
        sql, values, many = hot.prepare(parameters)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            # The statement counter, when it is on; else any ``before_cursor_execute``
            # listeners, through SQLAlchemy's dispatch.
            announce = self._announce or connection.dispatch.before_cursor_execute
            if announce:
                announce(connection, cursor, sql, values, None, many)
            try:
                if many:
                    cursor.executemany(sql, values)
                else:
                    cursor.execute(sql, values)
                if cursor.description is None:
                    return HotResult([], cursor.rowcount)
                return HotResult(hot.rows_of(cursor.description, cursor.fetchall()), -1)
            except sqlite3.Error as error:
                # What SQLAlchemy would raise (IntegrityError, OperationalError...), without
                # the parameters, as ``hide_parameters`` wants.
                raise DBAPIError.instance(
                    sql, None, error, sqlite3.Error, hide_parameters=True
                ) from error
        finally:
            cursor.close()

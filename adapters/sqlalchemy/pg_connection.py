"""SQLAlchemy's ``AsyncConnection`` on PostgreSQL, its hot statements run on asyncpg directly.

Through the async engine a statement passes a greenlet switch, SQLAlchemy's execution
context and its asyncpg cursor adapter before asyncpg sends it: about as much CPU again as
asyncpg's own work (ADR 17). A statement of the hot path (``hot_sql``) skips them: its text,
compiled once, goes to the prepared statement the adapter keeps for that text on this
connection, inside the transaction SQLAlchemy began (its ``BEGIN`` sent on the first
statement, as the adapter sends it). Commit, rollback, savepoints and every other statement
stay SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.hot_sql import HotResult, HotStatement, Parameters, hot_statement


class PgConnection:
    """An ``AsyncConnection`` (what ``engine.connect()`` returns, awaited or entered) whose
    statements used before run on the asyncpg connection underneath."""

    __slots__ = ("_connection", "_dialect")

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._dialect: Any = connection.engine.dialect  # asyncpg's, with its private parts

    def __await__(self) -> Generator[Any, None, PgConnection]:
        yield from self._connection.start().__await__()
        return self

    async def __aenter__(self) -> PgConnection:
        await self._connection.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._connection.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        # begin, commit, rollback, close, run_sync...: SQLAlchemy's.
        return getattr(self._connection, name)

    async def execute(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        """As ``AsyncConnection.execute``; on asyncpg for a statement used before."""
        hot = None if kwargs else hot_statement(statement, parameters, self._dialect)
        if hot is None:
            return await self._connection.execute(statement, parameters, **kwargs)
        return await self.run_hot(hot, parameters if parameters is not None else {})

    async def scalar(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        hot = None if kwargs else hot_statement(statement, parameters, self._dialect)
        if hot is None:
            return await self._connection.scalar(statement, parameters, **kwargs)
        return (await self.run_hot(hot, parameters if parameters is not None else {})).scalar()

    async def run_hot(self, hot: HotStatement, parameters: Parameters) -> HotResult:
        """Run a statement compiled once (``hot_sql``) on this connection's asyncpg
        connection."""
        connection = self._connection.sync_connection
        assert connection is not None, "the connection is not started"
        if not connection.in_transaction():
            connection.begin()  # as SQLAlchemy's autobegin: the same transaction boundaries
        adapter: Any = connection.connection.dbapi_connection
        sql, values, many = hot.prepare(parameters)
        announce = connection.dispatch.before_cursor_execute
        if announce:  # the statement counter, when it is on
            announce(connection, None, sql, values, None, many)
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()  # BEGIN, unless in autocommit mode
            if many:
                await adapter._connection.executemany(sql, values)
                return HotResult([], -1)
            prepared, attributes = await adapter._prepare(
                sql, self._dialect._invalidate_schema_cache_asof
            )
            records = await prepared.fetch(*values)
            if attributes:
                return HotResult(hot.rows_of(attributes, records), -1)
            return HotResult([], _rowcount(prepared.get_statusmsg()))
        except Exception as error:
            raise await self._wrapped(error, sql, adapter) from error

    async def _wrapped(self, error: Exception, sql: str, adapter: Any) -> Exception:
        """What SQLAlchemy would raise for ``error`` (``IntegrityError`` and the others,
        with ``sqlstate`` on ``orig``), without the parameters, as ``hide_parameters``
        wants; a lost connection is invalidated, as SQLAlchemy invalidates it."""
        dbapi = adapter.dbapi
        translated: Exception = error
        if not isinstance(error, dbapi.Error):
            try:
                adapter._handle_exception(error)
            except Exception as raised:
                translated = raised
        if not isinstance(translated, dbapi.Error):
            return translated
        lost = self._dialect.is_disconnect(translated, adapter, None)
        if lost:
            await self._connection.invalidate()
        wrapped: Exception = DBAPIError.instance(
            sql,
            None,
            translated,
            dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=self._dialect,
        )
        return wrapped


def _rowcount(status: str | None) -> int:
    """The rows a statement touched, from PostgreSQL's command tag (``UPDATE 3``)."""
    count = (status or "").rpartition(" ")[2]
    return int(count) if count.isdigit() else -1

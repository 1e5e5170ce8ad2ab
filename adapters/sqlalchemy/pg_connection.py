"""SQLAlchemy's ``AsyncConnection`` on PostgreSQL, its hot statements run on asyncpg directly.

Through the async engine a statement passes a greenlet switch, SQLAlchemy's execution
context and its asyncpg cursor adapter before asyncpg sends it: about as much CPU again as
asyncpg's own work (ADR 17). A statement of the hot path (``hot_sql``) skips them: its text,
compiled once, goes to the prepared statement the adapter keeps for that text on this
connection, inside the transaction SQLAlchemy began (its ``BEGIN`` sent on the first
statement, as the adapter sends it, or with it when that statement answers only a count:
``begin_with``). Savepoints and every other statement stay SQLAlchemy's.

Every step SQLAlchemy's async layer takes through a greenlet cost more here than its work:
a new greenlet maps a fresh frame stack (``mmap``, page faults, ``munmap``: about 8 µs in
this VM), and an order took 55 of them (checkout, begin, commit and checkin of each unit of
work). So the connection is kept between units of work (``PgKeptConnections``), ``begin``
(which sends nothing on asyncpg) is SQLAlchemy's sync call, and commit and rollback wait for
asyncpg's transaction directly before SQLAlchemy's sync bookkeeping, which then sends
nothing: about 0.4 greenlets per order are left (statements on their first use, savepoints).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from typing import Any, Literal, NamedTuple

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.begin_with import begin_with, can_begin_with, inlined
from adapters.sqlalchemy.held_writes import HeldWrite, composed
from adapters.sqlalchemy.hot_sql import HotResult, HotStatement, Parameters, hot_statement
from adapters.sqlalchemy.statement_counts import Announce, count_begun_with, count_sent_along
from kernel.errors import ConcurrencyConflict


class _Together(NamedTuple):
    """A statement with held writes in it (``held_writes``): its composed text, the writes,
    and each one's text, values and ``executemany`` flag (``HotStatement.prepare``)."""

    text: str
    held: list[tuple[HeldWrite, HotStatement]]
    parts: list[tuple[str, Any, bool]]


class PgKeptConnections:
    """Started connections kept open between units of work (PostgreSQL).

    A unit of work that checked its connection out of SQLAlchemy's async pool and back in
    paid two greenlet switches (each a new greenlet, whose frame stack is a fresh mapping
    of memory) and the pool's checkout and reset: as much CPU as two of its statements. It
    takes a connection kept here instead, and gives it back with no transaction left open.
    SQLAlchemy's pool stays underneath and counts these connections, so what is kept idle
    here must never starve a caller waiting for the pool: at most ``keep`` are kept (a
    quarter of the pool), a connection given back while someone waits goes to the pool,
    and one of the other kind (transactional or autocommit) is given up for a caller that
    finds none of its own kind.
    """

    __slots__ = ("_capacity", "_engines", "_idle", "_keep", "_waiting", "announce", "dialect")

    def __init__(
        self, engine: AsyncEngine, autocommit_engine: AsyncEngine, keep: int, capacity: int
    ) -> None:
        self._engines = (engine, autocommit_engine)
        self.dialect = engine.dialect
        self._idle: tuple[list[AsyncConnection], list[AsyncConnection]] = ([], [])
        self._keep = keep
        #: How many connections the pool opens at most.
        self._capacity = capacity
        #: Callers waiting for the pool right now.
        self._waiting = 0
        #: The statement counter, when it is on (``statement_counts``).
        self.announce: Announce | None = None

    async def take(self, autocommit: bool) -> AsyncConnection:
        idle = self._idle[autocommit]
        while idle:
            connection = idle.pop()
            if _usable(connection):
                return connection
            await connection.close()
        other = self._idle[not autocommit]
        if other and self._pool_full():
            await other.pop().close()  # back to the pool, for this caller
        self._waiting += 1
        try:
            return await self._engines[autocommit].connect()
        finally:
            self._waiting -= 1

    def _pool_full(self) -> bool:
        pool: Any = self._engines[0].sync_engine.pool
        return bool(pool.checkedout() >= self._capacity)

    async def give_back(
        self, connection: AsyncConnection, autocommit: bool, *, clean: bool = True
    ) -> None:
        """Keep ``connection`` for the next unit of work, or close it (back to the pool).
        One whose last use failed (``clean`` false) is closed: the pool's reset finds out
        whether it still works (a lost or half-used connection is given up there)."""
        if connection.closed:
            return
        idle = self._idle
        if (
            not clean
            or not _usable(connection)
            or self._waiting
            or len(idle[False]) + len(idle[True]) >= self._keep
        ):
            await connection.close()
            return
        try:
            if connection.in_transaction():
                await _end(connection, commit=False)
        except BaseException as error:
            # Lost, or busy with a statement a cancellation cut short: not kept (the pool
            # would have given it up in its reset the same way).
            with contextlib.suppress(Exception):
                await connection.invalidate()
                await connection.close()
            if not isinstance(error, Exception):
                raise
            return
        idle[autocommit].append(connection)

    async def close(self) -> None:
        """Give the kept connections back to the pool (before the engine is disposed)."""
        for idle in self._idle:
            while idle:
                await idle.pop().close()


#: How a use of a connection failed: with an error the server reported (the connection is
#: fine: a broken rule, a conflict) or otherwise (it may be mid-operation, or gone).
Failure = Literal["sql", "broken"]


def _failure(error: BaseException) -> Failure:
    orig = getattr(error, "orig", None)
    return "sql" if getattr(orig, "sqlstate", None) is not None else "broken"


def _usable(connection: AsyncConnection) -> bool:
    """Whether a kept connection may serve the next unit of work: not invalidated, and its
    asyncpg connection not closed (the server ended the session while it was idle: a
    restart, an administrator; asyncpg sees the socket close without a round trip)."""
    sync = connection.sync_connection
    if sync is None or sync.invalidated or sync.closed:
        return False
    adapter: Any = sync.connection.dbapi_connection
    return adapter is not None and not adapter._connection.is_closed()


async def _end(connection: AsyncConnection, *, commit: bool) -> None:
    """Commit or roll back ``connection``'s transaction without a greenlet.

    ``AsyncConnection.commit`` runs SQLAlchemy's sync commit in a new greenlet so that the
    adapter can wait for asyncpg. The wait is done here instead, on the adapter's asyncpg
    transaction; SQLAlchemy's commit then finds no transaction left on the adapter, sends
    nothing and only does its bookkeeping (its commit and rollback events included)."""
    sync = connection.sync_connection
    assert sync is not None
    # A lost connection has nothing to send and no adapter to ask: SQLAlchemy's own call
    # ends its transaction (a rollback) or says it cannot (a commit).
    if not sync.invalidated:
        adapter: Any = sync.connection.dbapi_connection
        transaction = adapter._transaction
        if transaction is not None:
            ending = transaction.commit if commit else transaction.rollback
            try:
                await adapter._call_and_discard(ending)  # forgets the transaction either way
            except Exception as error:
                raise await _translated(
                    error, "COMMIT" if commit else "ROLLBACK", connection, adapter
                ) from error
    if commit:
        sync.commit()
    else:
        sync.rollback()


class PgTransaction:
    """What ``PgConnection.begin`` returns: awaited or entered, as an ``AsyncTransaction``.

    SQLAlchemy's ``begin`` sends nothing on asyncpg (the adapter sends ``BEGIN`` with the
    first statement), so it runs here without the greenlet ``AsyncConnection.begin`` pays."""

    __slots__ = ("_connection",)

    def __init__(self, connection: PgConnection) -> None:
        self._connection = connection

    def __await__(self) -> Generator[Any, None, PgTransaction]:
        self._begin()
        return self
        yield  # never suspends

    async def __aenter__(self) -> PgTransaction:
        self._begin()
        return self

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._connection.in_transaction():
            await self._connection.end(commit=kind is None)

    def _begin(self) -> None:
        self._connection._sql_begin()


class PgConnection:
    """An ``AsyncConnection`` kept between units of work (``PgKeptConnections``), awaited or
    entered as ``engine.connect()`` is, whose statements used before run on the asyncpg
    connection underneath."""

    __slots__ = (
        "_announce",
        "_autocommit",
        "_connection",
        "_dialect",
        "_failed",
        "_held",
        "_kept",
    )

    def __init__(self, kept: PgKeptConnections, autocommit: bool = False) -> None:
        self._kept: PgKeptConnections | None = kept
        self._autocommit = autocommit
        #: How a statement, commit or rollback on it last failed, if it did: its connection
        #: is then not kept, and one left mid-operation is given up.
        self._failed: Failure | None = None
        self._dialect: Any = kept.dialect  # asyncpg's, with its private parts
        self._announce = kept.announce
        self._connection: AsyncConnection = None  # type: ignore[assignment]
        #: Checked writes held to go with the outbox's records (``held_writes``).
        self._held: list[tuple[HeldWrite, HotStatement]] = []

    def __await__(self) -> Generator[Any, None, PgConnection]:
        yield from self._take().__await__()
        return self

    async def __aenter__(self) -> PgConnection:
        await self._take()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _take(self) -> None:
        assert self._kept is not None
        self._connection = await self._kept.take(self._autocommit)

    def __getattr__(self, name: str) -> Any:
        # begin_nested, run_sync, invalidate...: SQLAlchemy's, which would pass the writes
        # held here.
        assert not self._held, f"{name} with writes held: send them first"
        return getattr(self._connection, name)

    def begin(self) -> PgTransaction:
        return PgTransaction(self)

    def _sql_begin(self, *, autobegin: bool = False) -> None:
        """SQLAlchemy's ``begin`` (``autobegin``: only if no transaction is under way, as
        its autobegin). Not on an autocommit connection: there it sends nothing either, and
        its bookkeeping, with the rollback that ends it when the connection is given back,
        cost as much CPU as the statement (issue 12)."""
        sync = self._connection.sync_connection
        assert sync is not None, "the connection is not started"
        if not self._autocommit and not (autobegin and sync.in_transaction()):
            sync.begin()

    async def commit(self) -> None:
        await self.end(commit=True)

    async def rollback(self) -> None:
        await self.end(commit=False)

    async def end(self, *, commit: bool) -> None:
        """Commit (what is held first) or roll back (what is held forgotten) (``_end``),
        remembering a failure for ``close``."""
        if commit and self._held:
            await self.send_held()
        self._held.clear()
        try:
            await _end(self._connection, commit=commit)
        except BaseException as error:
            self._failed = _failure(error)
            raise

    async def close(self) -> None:
        kept, self._kept = self._kept, None
        if kept is None or self._connection is None:
            return
        if self._failed == "broken":
            # Cut off mid-operation (a client-side error, a cancellation): the pool's reset
            # would not always see it, and the next user would find "another operation in
            # progress".
            with contextlib.suppress(Exception):
                await self._connection.invalidate()
        await kept.give_back(self._connection, self._autocommit, clean=self._failed is None)

    def hold(self, held: HeldWrite) -> bool:
        """Hold ``held`` back to go with the outbox's records, if it can be (a statement
        used before that answers only a count); ``False``: send it now."""
        if self._autocommit or held.table is None or not isinstance(held.parameters, Mapping):
            return False
        hot = hot_statement(held.statement, held.parameters, self._dialect)
        if hot is None or not hot.counts_only:
            return False
        if any(table == held.table for table in (other.table for other, _ in self._held)):
            # One statement, one snapshot: two parts must not touch one table.
            return False
        self._held.append((held, hot))
        return True

    def _apart(self, hot: HotStatement) -> bool:
        """Whether ``hot`` reads none of the tables the held writes touch: it reads the same
        rows whether they go before it or after."""
        reads = hot.reads
        return bool(reads) and all(write.table not in reads for write, _ in self._held)

    async def send_held(self) -> None:
        """Send the held writes now, one statement each, and check them."""
        held, self._held = self._held, []
        for write, _ in held:
            await write.run(self)

    async def execute_with_held(self, statement: Any, parameters: Any) -> Any:
        """``execute`` a statement that returns at least one row (the outbox's records),
        with the held writes in the same statement (``held_writes``); their conflicts are
        raised here."""
        held, self._held = self._held, []
        hot = hot_statement(statement, parameters, self._dialect) if held else None
        together = None
        if hot is not None and not hot.counts_only and isinstance(parameters, Mapping):
            parts = [write_hot.prepare(write.parameters) for write, write_hot in held]
            text = composed(hot.text(parameters)[0], [part_sql for part_sql, _, _ in parts])
            together = None if text is None else _Together(text, held, parts)
        if hot is None or together is None:
            self._held = held
            await self.send_held()
            return await self.execute(statement, parameters)
        try:
            return await self.run_hot(hot, parameters, together)
        except ConcurrencyConflict:
            raise  # a held write's: the connection is fine, its transaction rolls back
        except IntegrityError as error:
            self._failed = "sql"
            for write, _ in held:
                conflict = write.conflict(error)
                if conflict is not None:
                    raise conflict from error
            raise
        except BaseException as error:
            self._failed = _failure(error)
            raise

    async def execute(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        """As ``AsyncConnection.execute``; on asyncpg for a statement used before. The
        writes held go first, unless it only reads other tables than theirs."""
        hot = None if kwargs else hot_statement(statement, parameters, self._dialect)
        if self._held and not (hot is not None and self._apart(hot)):
            await self.send_held()
        try:
            if hot is None:
                return await self._connection.execute(statement, parameters, **kwargs)
            return await self.run_hot(hot, parameters if parameters is not None else {})
        except BaseException as error:
            self._failed = _failure(error)
            raise

    async def scalar(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        return (await self.execute(statement, parameters, **kwargs)).scalar()

    async def run_hot(
        self,
        hot: HotStatement,
        parameters: Parameters,
        together: _Together | None = None,
    ) -> HotResult:
        """Run a statement compiled once (``hot_sql``) on this connection's asyncpg
        connection; with held writes in it (``execute_with_held``), checked."""
        self._sql_begin(autobegin=True)  # the same transaction boundaries as SQLAlchemy's
        connection: Any = self._connection.sync_connection
        adapter: Any = connection.connection.dbapi_connection
        sql, values, many = hot.prepare(parameters)
        # The statement counter, when it is on; else any ``before_cursor_execute`` listeners,
        # through SQLAlchemy's dispatch. Held writes are announced as the statements they are.
        announce = self._announce or connection.dispatch.before_cursor_execute
        if announce:
            for part_sql, part_values, _ in together.parts if together else ():
                announce(connection, None, part_sql, part_values, None, False)
                if self._announce is not None:
                    count_sent_along(part_sql)
            announce(connection, None, sql, values, None, many)
        counts: tuple[int, ...] | None = None
        if together is not None:
            sql = together.text
            values = [*values]
            for _, part_values, _ in together.parts:
                values.extend(part_values)
        try:
            if adapter._transaction is None and not self._autocommit:
                if hot.counts_only and not many and can_begin_with(adapter):
                    # Its first statement answers only a count: sent with its BEGIN.
                    statement = inlined(sql, values)
                    if statement is not None:
                        status = await begin_with(adapter, statement)
                        if self._announce is not None:
                            count_begun_with(sql)
                        return HotResult([], _rowcount(status))
                await adapter._start_transaction()  # BEGIN
            if many:
                await adapter._connection.executemany(sql, values)
                return HotResult([], -1)
            prepared, attributes = await adapter._prepare(
                sql, self._dialect._invalidate_schema_cache_asof
            )
            records = await prepared.fetch(*values)
            if together is not None:
                records, counts = _without_counts(records, len(together.held))
            if attributes:
                result = HotResult(hot.rows_of(attributes, records), -1)
            else:
                result = HotResult([], _rowcount(prepared.get_statusmsg()))
        except Exception as error:
            raise await _translated(error, sql, self._connection, adapter) from error
        if together is not None:
            if counts is None:
                raise RuntimeError("a statement with held writes answered no row: no counts")
            for (write, _), count in zip(together.held, counts, strict=True):
                write.check(count)
        return result


async def _translated(
    error: Exception, sql: str, connection: AsyncConnection, adapter: Any
) -> Exception:
    """What SQLAlchemy would raise for ``error`` (``IntegrityError`` and the others, with
    ``sqlstate`` on ``orig``), without the parameters, as ``hide_parameters`` wants; a lost
    connection is invalidated, as SQLAlchemy invalidates it."""
    dbapi = adapter.dbapi
    dialect = connection.dialect
    translated: Exception = error
    if not isinstance(error, dbapi.Error):
        try:
            adapter._handle_exception(error)
        except Exception as raised:
            translated = raised
    if not isinstance(translated, dbapi.Error):
        return translated
    lost = dialect.is_disconnect(translated, adapter, None)
    if lost:
        await connection.invalidate()
    wrapped: Exception = DBAPIError.instance(
        sql,
        None,
        translated,
        dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped


def _without_counts(
    records: list[Any], held: int
) -> tuple[list[tuple[Any, ...]], tuple[int, ...] | None]:
    """The rows of a statement composed with ``held`` writes, and the writes' counts (the
    last columns of each row; ``None`` if it answered no row)."""
    if not records:
        return [], None
    own = len(records[0]) - held
    return [tuple(record)[:own] for record in records], tuple(records[0])[own:]


def _rowcount(status: str | None) -> int:
    """The rows a statement touched, from PostgreSQL's command tag (``UPDATE 3``)."""
    count = (status or "").rpartition(" ")[2]
    return int(count) if count.isdigit() else -1

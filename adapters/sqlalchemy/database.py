"""One SQLAlchemy async engine, configured for SQLite (the default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from adapters.sqlalchemy.inline_sqlite import BUSY_TIMEOUT_SECONDS, connector, open_file
from adapters.sqlalchemy.loop_connection import KeptConnections, LoopConnection
from adapters.sqlalchemy.pg_connection import PgConnection, PgKeptConnections
from adapters.sqlalchemy.statement_counts import count_statements, counting_enabled
from kernel.errors import ConcurrencyConflict

log = logging.getLogger("cleave.database")

DEFAULT_URL = "sqlite+aiosqlite:///cleave.db"


def normalise_url(url: str) -> URL:
    """Accept the URLs people paste (``postgresql://``, ``sqlite:///``) and pick async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.get_driver_name() != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres") and parsed.get_driver_name() != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


class Database:
    """The database a process (or one module of it) keeps its state in.

    SQLite runs in WAL mode with a generous busy timeout, so readers never wait for the
    writer and concurrent writers queue instead of failing. ``schema`` (PostgreSQL only)
    puts every table in one schema, which is how tests get a clean database each.
    ``pool_size`` (PostgreSQL only): the most connections this process opens, seven eighths
    of them kept open; past that, work waits for a connection (at most 10 s, then
    ``Unavailable``).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        schema: str | None = None,
        inline: bool = True,
        pool_size: int = 16,
    ) -> None:
        self.url = normalise_url(url)
        #: Read on every unit of work and relay turn: known once, not parsed from the URL.
        self.is_sqlite: bool = self.url.get_backend_name() == "sqlite"
        self.schema = schema
        kwargs: dict[str, Any] = {}
        path = self.url.database
        self.inline = self.is_sqlite and inline and path not in (None, "", ":memory:")
        if self.inline:
            assert path is not None
            kwargs["async_creator"] = connector(path)
        if self.is_sqlite:
            # No ceiling on SQLite connections (they are cheap): a unit of work that holds
            # one and asks another module for data needs a second, and a fixed pool filled by
            # units waiting for the writer gate would deadlock.
            kwargs.update(connect_args={"timeout": 30}, pool_size=20, max_overflow=-1)
        else:
            connect_args: dict[str, Any] = {}
            if schema is not None:
                connect_args["server_settings"] = {"search_path": schema}
            # Bounded so that every process of a deployment fits in the server's
            # max_connections: past it PostgreSQL refuses new connections, and a pool that
            # kept opening and closing overflow connections under load spent its CPU on that
            # (split-http at 50 orders/s settled 2-6 of them; bench, 2026-11-30). Mostly
            # kept open: a connection opened per burst costs more than the work it does.
            burst = max(1, pool_size // 8)
            kwargs.update(
                connect_args=connect_args,
                pool_size=max(1, pool_size - burst),
                max_overflow=burst,
                pool_timeout=10,
            )
        # A failed statement's error (logged, and carried in tracebacks) must not show its
        # parameters: they hold password hashes, emails and payment details.
        self.engine: AsyncEngine = create_async_engine(self.url, hide_parameters=True, **kwargs)
        #: The same pool, each statement committed on its own: on PostgreSQL one statement
        #: needs no BEGIN and COMMIT, two round trips of its three (``one_statement``).
        self.autocommit_engine: AsyncEngine = self.engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
        #: The same file through SQLAlchemy's sync API, for the storage of the order flow
        #: (``connect``): no greenlet switch per call (see ``loop_connection``).
        self.loop_engine: Engine | None = None
        self._kept: KeptConnections | None = None
        #: PostgreSQL's connections kept between units of work: at most a quarter of the
        #: pool idle (none for a pool of three or fewer).
        self._pg_kept: PgKeptConnections | None = None
        if not self.is_sqlite:
            self._pg_kept = PgKeptConnections(
                self.engine, self.autocommit_engine, keep=pool_size // 4, capacity=pool_size
            )
        if self.inline:
            assert path is not None
            self.loop_engine = create_engine(
                self.url.set(drivername="sqlite+pysqlite"),
                creator=partial(open_file, path),
                hide_parameters=True,
                poolclass=QueuePool,
                pool_size=20,
                max_overflow=-1,
            )
            self._kept = KeptConnections(self.loop_engine, keep=20)
        engines = [self.engine.sync_engine]
        if self.loop_engine is not None:
            engines.append(self.loop_engine)
        if counting_enabled():
            for engine in engines:
                announce = count_statements(engine)
                # The hot path calls the counter itself (``hot_sql``).
                if engine is self.loop_engine and self._kept is not None:
                    self._kept.announce = announce
                elif self._pg_kept is not None:
                    self._pg_kept.announce = announce
        #: SQLite has one writer at a time. Writers of this process queue on this gate
        #: instead of sleeping in SQLite's busy handler (which cost 6 ms a write here).
        self.writer: WriterGate | None = None
        if self.is_sqlite:
            # Inline statements block the loop while they wait for another process's lock:
            # wait briefly and let the retry machinery take over.
            busy_ms = int(BUSY_TIMEOUT_SECONDS * 1000) if self.inline else 30_000
            for engine in engines:
                event.listen(engine, "connect", partial(_sqlite_pragmas, busy_ms))
            self.writer = WriterGate()

    def connect(
        self, *, autocommit: bool = False
    ) -> AsyncConnection | LoopConnection | PgConnection:
        """A connection for the storage's hot path: await it or enter it, as
        ``engine.connect()``. On an inline SQLite file a ``LoopConnection`` (checked out
        now, so enter or close it), on PostgreSQL a ``PgConnection`` (``autocommit``: each
        statement committed on its own), elsewhere the async engine's ``AsyncConnection``."""
        if self._kept is not None:
            return LoopConnection(self._kept)
        if self._pg_kept is not None:
            return PgConnection(self._pg_kept, autocommit)
        return self.engine.connect()

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs."""
        return self.url.render_as_string(hide_password=True)

    async def create_all(self, metadatas: Iterable[MetaData]) -> None:
        """Create every missing table (and the schema, if one is set)."""
        async with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Instances of a module start together: one creates, the others then see it
                # (concurrent CREATEs of one table or schema fail on PostgreSQL).
                await connection.execute(text("SELECT pg_advisory_xact_lock(7411000001)"))
            if self.schema is not None and not self.is_sqlite:
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            for metadata in metadatas:
                await connection.run_sync(metadata.create_all)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            log.warning("database %s does not answer", self.display_url, exc_info=True)
            return False

    async def dispose(self) -> None:
        if self._kept is not None:
            self._kept.close()
        if self._pg_kept is not None:
            await self._pg_kept.close()
        if self.loop_engine is not None:
            self.loop_engine.dispose()
        await self.engine.dispose()


class WriterGate:
    """One writing transaction at a time in this process (SQLite only)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._timeout = timeout

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if self._owner is not None and self._owner is task:
            raise RuntimeError(
                "a handler called another module synchronously (bus.send) after it had "
                "written: with SQLite that waits for itself. Send before writing, or use "
                "bus.defer to send after commit."
            )
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the lock is granted (the task then runs on after being told
            # to stop), or cancel an acquire that had succeeded (a lock nobody holds).
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise ConcurrencyConflict("waited too long for the SQLite writer") from None
        self._owner = task

    def release(self) -> None:
        self._owner = None
        self._lock.release()


def _sqlite_pragmas(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

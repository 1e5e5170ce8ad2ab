"""SQLite driven on the event loop's own thread, behind SQLAlchemy's aiosqlite dialect.

aiosqlite runs every statement on a helper thread and hands the result back through the
event loop. For SQLite (a library call of a few microseconds on a local file) that hop, and
the GIL hand-over that comes with it, costs far more than the statement itself: a unit of
work of five statements spent most of its time switching threads. This module offers the
few methods SQLAlchemy's aiosqlite dialect calls, and runs them inline (``async_creator``
of ``create_async_engine``).

Blocking the loop is safe because this process never waits for its own locks: its writers
queue on the ``WriterGate`` before they write, and WAL readers never wait. Another process
writing the same file could make a statement wait for SQLite's lock; a short busy timeout
bounds that, and the resulting "database is locked" is retried like any lost race.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

#: How long a statement may wait for another process's write lock, blocking the loop.
BUSY_TIMEOUT_SECONDS = 0.2
#: sqlite3's implicit transactions (a BEGIN before the first write, reads outside it until
#: then), which SQLAlchemy's SQLite dialects expect; typeshed does not list "".
_IMPLICIT_BEGIN: Any = ""


class InlineCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter needs of an ``aiosqlite.Connection``."""

    __slots__ = ("_conn", "_connection")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        # The adapter checks this attribute to know whether the connection is still open.
        self._connection: sqlite3.Connection | None = connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


def open_file(path: str) -> sqlite3.Connection:
    """A connection to the SQLite file ``path``, as every inline connection is opened."""
    return sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        check_same_thread=False,
        detect_types=0,
        isolation_level=_IMPLICIT_BEGIN,
    )


def connector(path: str) -> Any:
    """An ``async_creator`` for ``create_async_engine`` that opens ``path`` inline."""

    async def connect() -> InlineConnection:
        return InlineConnection(open_file(path))

    return connect

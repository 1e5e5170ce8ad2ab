"""A module's own statements, built once as the repositories build them, run on SQLite's
cursor from their second use (``hot_sql.hot_statement``) and mean exactly what they mean
through SQLAlchemy: the same rows under the same names, the same type conversions both ways
(booleans, floats), the same row counts and errors. Statements built per call, and those
SQLAlchemy must do more for (Python-side defaults), keep going through SQLAlchemy. The
connections units of work use are kept open between them and handed on clean."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import Pool

from adapters.sqlalchemy import hot_sql
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.hot_sql import HotResult
from adapters.sqlalchemy.storage import write_transaction
from kernel.messages import Envelope
from tests.integration.test_sqlite_loop_connection import sqlite_file, storage_of

pytestmark = pytest.mark.anyio

metadata = MetaData()
sagas = Table(
    "cursor_sagas",
    metadata,
    Column("order_id", String, primary_key=True),
    Column("deadline", Float, nullable=False),
    Column("void_pending", Boolean, nullable=False),
    Column("version", Integer, nullable=False, default=0),
)
ADD = insert(sagas)
ONE = select(sagas).where(sagas.c.order_id == bindparam("order_id"))
PENDING = select(func.count()).select_from(sagas).where(sagas.c.void_pending == bindparam("flag"))
SAVE = (
    update(sagas)
    .where(sagas.c.order_id == bindparam("match"))
    .values(void_pending=bindparam("void_pending"), version=bindparam("version"))
)


@pytest.fixture(params=["cursor", "sqlalchemy"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with sqlite_file(tmp_path, metadata, inline=request.param == "cursor") as database:
        yield database


@pytest.fixture
async def inline(tmp_path: Path) -> AsyncIterator[Database]:
    async with sqlite_file(tmp_path, metadata) as database:
        yield database


def on_cursor(database: Database) -> bool:
    return database.loop_engine is not None


async def test_module_statements_mean_the_same_on_the_cursor(database: Database) -> None:
    rows = []
    for round_ in range(3):  # the first use goes through SQLAlchemy, the next ones need not
        async with write_transaction(database) as connection:
            await connection.execute(
                ADD,
                {
                    "order_id": f"o-{round_}",
                    "deadline": 10 + round_,
                    "void_pending": True,
                    "version": 1,
                },
            )
            updated = await connection.execute(
                SAVE, {"match": f"o-{round_}", "void_pending": False, "version": 2}
            )
            missed = await connection.execute(
                SAVE, {"match": "nobody", "void_pending": False, "version": 2}
            )
            assert (updated.rowcount, missed.rowcount) == (1, 0)
            row = (await connection.execute(ONE, {"order_id": f"o-{round_}"})).first()
            assert (await connection.execute(ONE, {"order_id": "nobody"})).first() is None
            flagged = await connection.scalar(PENDING, {"flag": False})
            assert flagged == round_ + 1
        rows.append(row)
        # The stored boolean comes back a bool, the integer deadline a float, by name.
        assert row.void_pending is False and row.deadline == 10.0 + round_
        assert isinstance(row.deadline, float) and row.version == 2
        assert row._fields == ("order_id", "deadline", "void_pending", "version")
        assert row[0] == f"o-{round_}"
    ran_on_cursor = isinstance(row, tuple) and not hasattr(row, "_mapping")
    assert ran_on_cursor == on_cursor(database)


async def test_a_broken_rule_raises_sqlalchemys_error_on_every_use(database: Database) -> None:
    for _ in range(3):
        with pytest.raises(IntegrityError):
            async with write_transaction(database) as connection:
                await connection.execute(
                    ADD, {"order_id": "o-1", "deadline": 1.0, "void_pending": False}
                )
                await connection.execute(
                    ADD, {"order_id": "o-1", "deadline": 1.0, "void_pending": False}
                )
    async with database.connect() as connection:
        assert (await connection.execute(select(sagas))).all() == []


async def test_what_needs_sqlalchemy_stays_with_it(inline: Database) -> None:
    database = inline
    # ``version`` has a Python-side default: an INSERT that leaves it out needs SQLAlchemy
    # to fill it in, every time.
    for number in range(3):
        async with write_transaction(database) as connection:
            result = await connection.execute(
                ADD, {"order_id": f"d-{number}", "deadline": 1.0, "void_pending": False}
            )
            assert not isinstance(result, HotResult)
    # A statement built per call is never compiled for the cursor (nor kept past a limit).
    async with database.connect() as connection:
        for number in range(3):
            found = await connection.execute(select(sagas).where(sagas.c.order_id == f"d-{number}"))
            assert not isinstance(found, HotResult)
            assert [row.version for row in found] == [0]
        for _ in range(2):  # built once: on the cursor from its second use at the latest
            found = await connection.execute(ONE, {"order_id": "d-0"})
        assert isinstance(found, HotResult) and [row.version for row in found] == [0]
    assert len(hot_sql._KNOWN) <= hot_sql._KNOWN_AT_MOST


async def test_kept_connections_are_handed_on_clean(inline: Database) -> None:
    database = inline
    checkouts: list[Any] = []

    def checked_out(*_: Any) -> None:
        checkouts.append(1)

    event.listen(Pool, "checkout", checked_out)
    try:
        storage = storage_of(database)
        # A unit of work that wrote and was dropped (a handler failed) leaves nothing, and the
        # next unit, on the same kept connection, starts in no transaction.
        for number in range(20):
            unit = storage.unit_of_work(Envelope(message_id=f"m-{number}", name="t", version=1))
            connection = await unit.connection()
            await connection.execute(
                ADD,
                {"order_id": f"o-{number}", "deadline": 1.0, "void_pending": False, "version": 0},
            )
            await unit.rollback()
        # A connection closed in the middle of a transaction is rolled back before reuse.
        async with database.connect() as connection:
            await connection.execute(
                ADD, {"order_id": "left", "deadline": 1.0, "void_pending": False, "version": 0}
            )
        async with database.connect() as connection:
            assert connection.sync_connection.in_transaction() is False
            assert (await connection.execute(select(sagas))).all() == []
        # One connection served them all: no checkout of the pool per unit of work.
        assert len(checkouts) <= 2
    finally:
        event.remove(Pool, "checkout", checked_out)

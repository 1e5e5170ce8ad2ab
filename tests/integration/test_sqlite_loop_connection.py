"""The storage of a SQLite file talks to SQLite through SQLAlchemy's sync API on the loop's
thread (``LoopConnection``), and its transactions keep their meaning there: what fails
leaves nothing behind, a failed savepoint only undoes itself, and what commits is seen by
every other connection to the file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import greenlet  # type: ignore[import-untyped]  # no stubs; only getcurrent() is used
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.storage import SqlStorage, write_transaction
from entrypoints.bootstrap import shop_contracts
from kernel.clock import SystemClock
from kernel.codec import Codec
from kernel.messages import Envelope
from kernel.registry import Registry

pytestmark = pytest.mark.anyio

metadata = MetaData()
notes = Table(
    "loop_notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("text", String, nullable=False),
)


@asynccontextmanager
async def sqlite_file(
    directory: Path, tables: MetaData, inline: bool = True
) -> AsyncIterator[Database]:
    """A database on a SQLite file in ``directory`` with ``tables`` (``inline=False``: the
    async engine only, where every statement goes through SQLAlchemy)."""
    database = Database(f"sqlite+aiosqlite:///{directory / 'shop.db'}", inline=inline)
    assert (database.loop_engine is not None) == inline
    await database.create_all([tables])
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with sqlite_file(tmp_path, metadata) as database:
        yield database


def storage_of(database: Database) -> SqlStorage:
    return SqlStorage(
        database, "ordering", Registry([], shop_contracts()), Codec([], "json"), SystemClock()
    )


async def texts(database: Database) -> list[str]:
    """The notes as another connection (the async engine's) sees them."""
    async with database.engine.connect() as connection:
        return list((await connection.scalars(select(notes.c.text).order_by(notes.c.id))).all())


async def test_statements_of_the_storage_run_without_a_greenlet_switch(
    database: Database,
) -> None:
    # SQLAlchemy's async adapter runs each statement in a greenlet of its own (the switch
    # this path exists to avoid); a statement on the loop's own greenlet had none.
    in_a_child_greenlet: list[bool] = []

    def record(*_: Any) -> None:
        in_a_child_greenlet.append(greenlet.getcurrent().parent is not None)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        async with write_transaction(database) as connection:
            await connection.execute(insert(notes), {"id": 1, "text": "through the storage"})
        unit = storage_of(database).unit_of_work(Envelope(message_id="m-1", name="t", version=1))
        await (await unit.connection()).execute(select(notes))
        await unit.rollback()
        assert in_a_child_greenlet == [False, False]
        await texts(database)  # the async engine, for contrast: the check sees the switch
        assert in_a_child_greenlet == [False, False, True]
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_failed_write_transaction_leaves_nothing_and_an_ended_one_is_seen(
    database: Database,
) -> None:
    with pytest.raises(RuntimeError):
        async with write_transaction(database) as connection:
            await connection.execute(insert(notes), {"id": 1, "text": "half done"})
            raise RuntimeError("the work failed after its first write")
    assert await texts(database) == []
    async with write_transaction(database) as connection:
        await connection.execute(insert(notes), {"id": 1, "text": "done"})
    assert await texts(database) == ["done"]


async def test_a_failed_savepoint_undoes_only_itself(database: Database) -> None:
    async with write_transaction(database) as connection:
        await connection.execute(insert(notes), {"id": 1, "text": "before"})
        with pytest.raises(IntegrityError):
            async with connection.begin_nested():
                await connection.execute(insert(notes), {"id": 2, "text": "undone"})
                await connection.execute(insert(notes), {"id": 1, "text": "a duplicate"})
        await connection.execute(insert(notes), {"id": 3, "text": "after"})
    assert await texts(database) == ["before", "after"]


async def test_a_unit_of_work_commits_or_leaves_nothing(database: Database) -> None:
    storage = storage_of(database)
    dropped = storage.unit_of_work(Envelope(message_id="m-1", name="t", version=1))
    await (await dropped.connection()).execute(insert(notes), {"id": 1, "text": "dropped"})
    await dropped.rollback()
    assert await texts(database) == []
    kept = storage.unit_of_work(Envelope(message_id="m-2", name="t", version=1))
    await (await kept.connection()).execute(insert(notes), {"id": 1, "text": "kept"})
    await kept.commit()
    assert await texts(database) == ["kept"]
    # Both gave their connection and this process's writer gate back.
    assert database.writer is not None
    await database.writer.acquire()
    database.writer.release()

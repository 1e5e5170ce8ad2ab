"""On PostgreSQL the storage keeps its connections between units of work
(``PgKeptConnections``) and ends their transactions on asyncpg directly: a unit of work does
not check a connection out of the pool and back in, and what is kept never starves a caller
waiting for the pool, never carries a transaction into the next unit, and never outlives a
lost connection (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.storage import one_statement, write_transaction
from kernel.errors import Unavailable
from kernel.messages import new_envelope
from tests.integration.test_sqlite_loop_connection import storage_of
from tests.integration.test_sqlite_module_statements import ADD, ONE, metadata
from tests.support.harness import cut_off, drop_database, open_database
from tests.support.services import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

_PID = text("SELECT pg_backend_pid()")


@contextlib.asynccontextmanager
async def _opened(pool_size: int) -> AsyncIterator[Database]:
    database = await open_database(require_postgres(), pool_size=pool_size)
    await database.create_all([metadata])
    try:
        yield database
    finally:
        # Every connection closed first: one left in a transaction would hold DROP SCHEMA.
        await database.dispose()
        await drop_database(database)


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    async with _opened(pool_size=16) as database:
        yield database


@pytest.fixture
async def small_database() -> AsyncIterator[Database]:
    """Four connections at most (three kept by the pool, one for bursts), one kept here."""
    async with _opened(pool_size=4) as database:
        yield database


def _saga(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "deadline": 1, "void_pending": False, "version": 1}


async def _visible(database: Database, order_id: str) -> bool:
    """Whether another connection (the engine's own) sees the saga."""
    async with database.engine.connect() as other:
        return (await other.execute(ONE, {"order_id": order_id})).first() is not None


async def test_units_of_work_reuse_kept_connections(database: Database) -> None:
    checkouts: list[object] = []
    event.listen(database.engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
    for number in range(10):
        async with write_transaction(database) as connection:
            await connection.execute(ADD, _saga(f"o-{number}"))
        async with one_statement(database) as connection:
            await connection.execute(ONE, {"order_id": f"o-{number}"})
        assert await _visible(database, f"o-{number}")  # committed, as before
    # One transactional and one autocommit connection, each checked out once; the engine's
    # own looks at the table are the rest.
    assert len(checkouts) - 10 == 2


async def test_a_connection_comes_back_without_its_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError, match="the unit failed"):
        async with write_transaction(database) as connection:
            await connection.execute(ADD, _saga("o-1"))
            raise RuntimeError("the unit failed")
    async with database.connect() as connection:
        await connection.execute(ADD, _saga("o-2"))  # begun, then closed without a commit
    async with database.connect() as connection:
        # The same kept connection, with nothing of the units before it in it.
        assert not connection.in_transaction()
        assert (await connection.execute(ONE, {"order_id": "o-2"})).first() is None
    assert not await _visible(database, "o-1")
    assert not await _visible(database, "o-2")


async def test_a_connection_lost_at_commit_is_not_kept(database: Database) -> None:
    async with database.connect() as connection:
        await connection.begin()
        for number in range(2):  # on asyncpg from the second use
            await connection.execute(ADD, _saga(f"o-{number}"))
        pid = await cut_off(database, connection)
        with pytest.raises(DBAPIError) as raised:
            await connection.commit()
        assert raised.value.connection_invalidated
    assert not await _visible(database, "o-0")
    async with write_transaction(database) as connection:
        assert await connection.scalar(_PID) != pid  # a new connection, not the dead one
        await connection.execute(ADD, _saga("o-2"))
    assert await _visible(database, "o-2")


async def _write(database: Database, order_id: str) -> None:
    async with write_transaction(database) as connection:
        await connection.execute(ADD, _saga(order_id))


async def test_a_caller_waiting_for_the_pool_gets_the_next_connection_given_back(
    small_database: Database,
) -> None:
    held = [await small_database.connect() for _ in range(4)]
    waiting = asyncio.create_task(_write(small_database, "o-1"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the pool is empty: it waits
    await held.pop().close()  # kept here would leave it waiting for the pool's 10 s
    await asyncio.wait_for(waiting, 5)
    for other in held:
        await other.close()
    assert await _visible(small_database, "o-1")


async def test_a_connection_kept_for_the_other_kind_of_work_is_given_up_for_a_caller(
    small_database: Database,
) -> None:
    async with one_statement(small_database) as connection:  # kept, in autocommit mode
        await connection.execute(ONE, {"order_id": "o-1"})
    held = [await small_database.connect() for _ in range(3)]  # the rest of the pool
    # No transactional connection is kept and the pool is empty: the autocommit one goes
    # back to the pool for this unit of work.
    await asyncio.wait_for(_write(small_database, "o-1"), 5)
    for other in held:
        await other.close()
    assert await _visible(small_database, "o-1")


async def test_a_connection_cut_off_mid_statement_is_given_up(database: Database) -> None:
    # Autocommit: no transaction whose rollback would fail and give the state away.
    async with one_statement(database) as connection:
        first = await connection.scalar(_PID)

    async def slow() -> None:
        async with one_statement(database) as connection:
            await connection.execute(text("SELECT pg_sleep(5)"))

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()  # a client gone, a stop: the statement is left half done
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(2):
        async with one_statement(database) as connection:
            # Not the connection left mid-statement ("another operation is in progress").
            assert await connection.scalar(_PID) != first
            await connection.execute(ONE, {"order_id": "o-1"})


async def test_a_broken_rule_keeps_the_connection_working(database: Database) -> None:
    async with write_transaction(database) as connection:
        await connection.execute(ADD, _saga("o-1"))
    for _ in range(3):  # the insert on asyncpg from its second use
        with pytest.raises(IntegrityError):
            async with write_transaction(database) as connection:
                await connection.execute(ADD, _saga("o-1"))
        # The next unit of work works, on a connection in a clean state.
        async with database.connect() as connection:
            assert not connection.in_transaction()
            assert len((await connection.execute(ONE, {"order_id": "o-1"})).all()) == 1


async def test_a_connection_lost_before_the_commit_lets_the_unit_run_again(
    database: Database,
) -> None:
    storage = storage_of(database)
    unit = storage.unit_of_work(new_envelope("ordering.X", 1))
    connection = await unit.connection()
    await connection.execute(ONE, {"order_id": "o-1"})
    await cut_off(database, connection)
    with pytest.raises(DBAPIError) as raised:
        for _ in range(3):  # however soon asyncpg sees the session end
            await connection.execute(ADD, _saga("o-1"))
    await unit.rollback()
    # Nothing was written: the dispatcher may run the unit again on a new connection.
    assert unit.transient(raised.value)
    assert not await _visible(database, "o-1")


async def test_a_connection_lost_at_commit_is_unavailable_not_run_again(
    database: Database,
) -> None:
    storage = storage_of(database)
    unit = storage.unit_of_work(new_envelope("ordering.X", 1))
    connection = await unit.connection()
    for number in range(2):  # on asyncpg from the second use
        await connection.execute(ADD, _saga(f"o-{number}"))
    await cut_off(database, connection)
    # The COMMIT may have been applied before the answer was lost: a 503 (or a retry on a
    # queue), never a silent rerun that could apply it twice.
    with pytest.raises(Unavailable, match="lost at commit") as raised:
        await unit.commit()
    assert not unit.transient(raised.value)

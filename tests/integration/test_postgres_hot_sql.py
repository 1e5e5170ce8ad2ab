"""On PostgreSQL the storage's statements, from their second use, run on asyncpg directly
(``PgConnection``), and mean exactly what they mean through SQLAlchemy: the same rows under
the same names, the same conversions, row counts and errors, inside the same transactions.
The relay's one-statement writes commit on their own (no BEGIN and COMMIT round trips), a
message is checked into the inbox in one statement, and a connection lost under a statement is
given up, not handed to the next unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.sqlalchemy import hot_sql
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.hot_sql import HotResult
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.pg_connection import PgConnection
from adapters.sqlalchemy.storage import one_statement, write_transaction
from kernel.errors import DuplicateDelivery
from kernel.messages import Envelope
from tests.integration.test_sqlite_hot_sql import handle, row
from tests.integration.test_sqlite_loop_connection import storage_of
from tests.integration.test_sqlite_module_statements import ADD, ONE, PENDING, SAVE, metadata
from tests.support.harness import cut_off, drop_database, open_database
from tests.support.services import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    database = await open_database(require_postgres())
    await database.create_all([metadata, messaging_tables("ordering").inbox.metadata])
    try:
        yield database
    finally:
        await drop_database(database)


@pytest.fixture(params=["asyncpg", "sqlalchemy"])
def connect(request: pytest.FixtureRequest, database: Database) -> Any:
    """Open a connection: the storage's (hot statements on asyncpg), or SQLAlchemy's own."""
    if request.param == "asyncpg":
        return database.connect
    return database.engine.connect


async def test_module_statements_mean_the_same_on_asyncpg(
    database: Database, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Statements no test has used before here (other tests share these module-level ones).
    monkeypatch.setattr(hot_sql, "_KNOWN", {})
    results = []
    for round_ in range(3):  # the first use goes through SQLAlchemy, the next ones need not
        async with connect() as connection, connection.begin():
            await connection.execute(
                ADD,
                {"order_id": f"o-{round_}", "deadline": 10, "void_pending": True, "version": 1},
            )
            updated = await connection.execute(
                SAVE, {"match": f"o-{round_}", "void_pending": False, "version": 2}
            )
            missed = await connection.execute(
                SAVE, {"match": "nobody", "void_pending": False, "version": 2}
            )
            assert (updated.rowcount, missed.rowcount) == (1, 0)
            found = await connection.execute(ONE, {"order_id": f"o-{round_}"})
            results.append(found)
            (saga,) = found.all()
            assert (await connection.execute(ONE, {"order_id": "nobody"})).first() is None
            assert await connection.scalar(PENDING, {"flag": False}) == round_ + 1
        assert saga.void_pending is False and saga.deadline == 10.0
        assert isinstance(saga.deadline, float) and saga.version == 2
        assert saga._fields == ("order_id", "deadline", "void_pending", "version")
        assert saga[0] == f"o-{round_}"
    on_asyncpg = [isinstance(result, HotResult) for result in results]
    assert on_asyncpg == ([False, True, True] if connect == database.connect else [False] * 3)


async def test_a_broken_rule_raises_sqlalchemys_error_and_undoes_the_transaction(
    database: Database, connect: Any
) -> None:
    for _ in range(3):
        with pytest.raises(IntegrityError) as raised:
            async with connect() as connection, connection.begin():
                saga = {"order_id": "o-1", "deadline": 1.0, "void_pending": False, "version": 0}
                await connection.execute(ADD, saga)
                await connection.execute(ADD, saga)
        # What ``is_transient`` and the repositories read; the values stay out of the text.
        assert raised.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
        assert "o-1" not in str(raised.value)
    async with connect() as connection:
        assert (await connection.execute(ONE, {"order_id": "o-1"})).all() == []


async def test_a_message_is_handled_once_and_a_lost_race_leaves_nothing(
    database: Database,
) -> None:
    storage = storage_of(database)
    for number in range(3):
        assert await handle(storage, f"m-{number}")
        assert not await handle(storage, f"m-{number}")
        # A concurrent delivery that checked before the first committed: the inbox's key
        # refuses it, on asyncpg as through SQLAlchemy.
        with pytest.raises(DuplicateDelivery):
            await handle(storage, f"m-{number}", check=False)


async def test_claims_and_removals_commit_on_their_own(database: Database) -> None:
    storage = storage_of(database)
    store = SqlOutboxStore(storage)
    texts: set[str] = set()

    @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
    def ran(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        texts.add(statement)

    async with write_transaction(database) as connection:
        await connection.execute(
            storage.statements.record, [row(f"r{n}", f"p{n}") for n in range(6)]
        )
    seen: list[list[int]] = []
    for limit in (1, 2, 3):  # IN lists of several lengths, from the second use on asyncpg
        claimed = await store.due(now=1.0, limit=limit, skip=range(100, 100 + limit))
        seen.append([record.id for record in claimed])
    assert seen == [[1], [2, 3], [4, 5, 6]]
    # Claimed is claimed: nothing is due until the leases run out.
    assert await store.due(now=2.0, limit=10) == []
    assert [r.id for r in await store.due(now=1.0 + store.lease_seconds, limit=2)] == [1, 2]
    outbox = messaging_tables("ordering").outbox
    async with one_statement(database) as connection:
        await connection.execute(outbox.delete().where(outbox.c.id == 1))
        # Committed as it ran: another connection sees it before this one is given back.
        async with database.engine.connect() as other:
            assert await other.scalar(select(outbox.c.id).where(outbox.c.id == 1)) is None
    await store.remove_delivered(claimed[:1])
    for _ in range(2):
        await store.remove_delivered(claimed)
    assert await store.pending() == 2
    # Lists of any length in one text each: one prepared statement per connection, not one
    # (and a prepare round trip) per length.
    assert len({text for text in texts if text.startswith("UPDATE ordering_outbox")}) == 1
    # The removals' text, and the DELETE built above.
    assert len({text for text in texts if text.startswith("DELETE FROM ordering_outbox")}) == 2


async def test_a_lost_connection_is_given_up(database: Database) -> None:
    async with database.connect() as connection:
        assert isinstance(connection, PgConnection)
        for _ in range(2):  # on asyncpg from the second use
            await connection.execute(ONE, {"order_id": "o-1"})
        await cut_off(database, connection)
        with pytest.raises(DBAPIError) as raised:
            await connection.execute(ONE, {"order_id": "o-1"})
        assert raised.value.connection_invalidated
    # The next unit of work gets a working connection, not the dead one.
    async with database.connect() as connection:
        assert (await connection.execute(ONE, {"order_id": "o-1"})).all() == []


@pytest.mark.parametrize("first_commits", [True, False])
async def test_a_concurrent_delivery_waits_for_the_first_then_skips_or_takes_over(
    database: Database, first_commits: bool
) -> None:
    storage = storage_of(database)
    envelope = Envelope(message_id="m-1", name="t", version=1)
    first = storage.unit_of_work(envelope)
    assert not await first.handled("ordering.h")  # checked in: the row is its own
    second = storage.unit_of_work(envelope)
    checking = asyncio.create_task(second.handled("ordering.h"))
    await asyncio.sleep(0.3)
    assert not checking.done()  # it waits for the first delivery's transaction
    first.mark_handled("ordering.h")
    if first_commits:
        await first.commit()
    else:
        await first.rollback()  # the handler failed: the message is not handled yet
    assert await asyncio.wait_for(checking, 10) is first_commits
    if first_commits:
        await second.rollback()
    else:
        second.mark_handled("ordering.h")
        await second.commit()
    assert not await handle(storage, "m-1")  # handled exactly once, either way

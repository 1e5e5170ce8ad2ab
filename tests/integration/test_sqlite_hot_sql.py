"""The messaging tables' hot-path statements run straight on SQLite's cursor (``hot_sql``) on
an inline SQLite file, and through SQLAlchemy elsewhere; both ways mean the same thing: a
message is handled once, the relay reads what is due behind the records in flight, what
fails leaves nothing, and the bench's statement and transaction counts do not change."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.statement_counts import StatementCounts, count_statements
from adapters.sqlalchemy.storage import SqlStorage, write_transaction
from kernel.errors import DuplicateDelivery
from kernel.messages import Envelope
from tests.integration.test_sqlite_loop_connection import storage_of

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["cursor", "sqlalchemy"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    # ``inline=False``: the async engine, where the same statements go through SQLAlchemy.
    database = Database(
        f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}", inline=request.param == "cursor"
    )
    assert (database.loop_engine is not None) == (request.param == "cursor")
    await database.create_all([messaging_tables("ordering").inbox.metadata])
    try:
        yield database
    finally:
        await database.dispose()


def row(message_id: str, partition: str) -> dict[str, object]:
    return {
        "message_id": message_id,
        "target": "payments",
        "name": "PaymentRequested",
        "partition": partition,
        "envelope": "{}",
        "body": "{}",
        "attempts": 0,
        "next_attempt_at": 0.0,
        "created_at": 0.0,
    }


async def handle(storage: SqlStorage, message_id: str, check: bool = True) -> bool:
    """Whether a handler ran for the message (it skips a message its inbox has seen)."""
    unit = storage.unit_of_work(Envelope(message_id=message_id, name="t", version=1))
    if check and await unit.handled("ordering.h"):
        await unit.rollback()
        return False
    unit.mark_handled("ordering.h")
    await unit.commit()
    return True


async def test_a_message_is_handled_once_and_a_lost_race_leaves_nothing(
    database: Database,
) -> None:
    storage = storage_of(database)
    assert await handle(storage, "m-1")
    assert not await handle(storage, "m-1")
    # A concurrent delivery that checked before the first committed: the inbox's key refuses
    # it, as SQLAlchemy's IntegrityError, which the unit of work reports as a duplicate.
    with pytest.raises(DuplicateDelivery):
        await handle(storage, "m-1", check=False)
    assert await handle(storage, "m-2")
    # Every unit gave the writer gate back.
    assert database.writer is not None
    await database.writer.acquire()
    database.writer.release()


async def test_the_relay_reads_what_is_due_behind_the_records_in_flight(
    database: Database,
) -> None:
    store = SqlOutboxStore(storage_of(database))
    statements = storage_of(database).statements
    async with write_transaction(database) as connection:
        rows = [row("a", "p1"), row("b", "p1"), row("c", "p2"), row("d", "p3")]
        assert (await connection.execute(statements.record, rows)).rowcount == 4
    first = await store.due(now=1.0, limit=10)
    # The oldest record of each partition, and whether another waits behind it.
    assert [(r.id, r.partition, r.followed) for r in first] == [
        (1, "p1", True),
        (3, "p2", False),
        (4, "p3", False),
    ]
    assert [r.id for r in await store.due(now=1.0, limit=10, skip=[1])] == [3, 4]
    assert [r.id for r in await store.due(now=1.0, limit=10, skip=[1, 3])] == [4]
    assert [r.id for r in await store.due(now=1.0, limit=1, skip=[])] == [1]
    await store.remove_delivered(first[:2])
    assert [r.id for r in await store.due(now=1.0, limit=10)] == [2, 4]
    assert await store.pending() == 2
    # A failed transaction takes its outbox records with it.
    with pytest.raises(RuntimeError):
        async with write_transaction(database) as connection:
            await connection.execute(statements.record, [row("e", "p4")])
            raise RuntimeError("the work failed after its write")
    assert await store.pending() == 2


async def test_statements_and_transactions_are_counted_as_through_sqlalchemy(
    tmp_path: Path,
) -> None:
    counted: list[tuple[Counter[tuple[str, str, str]], Counter[str]]] = []
    for inline in (True, False):
        database = Database(f"sqlite+aiosqlite:///{tmp_path / f'{inline}.db'}", inline=inline)
        await database.create_all([messaging_tables("ordering").inbox.metadata])
        counts = StatementCounts()
        for engine in (database.engine.sync_engine, database.loop_engine):
            if engine is not None:
                count_statements(engine, counts)
        try:
            storage = storage_of(database)
            store = SqlOutboxStore(storage)
            await handle(storage, "m-1")
            await handle(storage, "m-1")
            async with write_transaction(database) as connection:
                await connection.execute(storage.statements.record, [row("a", "p"), row("b", "p")])
            records = await store.due(now=1.0, limit=10)
            await store.remove_delivered(records)
        finally:
            await database.dispose()
        counted.append((counts.statements, counts.transactions))
    on_the_cursor, through_sqlalchemy = counted
    assert on_the_cursor == through_sqlalchemy
    assert on_the_cursor[0] == {
        ("ordering", "select", "inbox"): 2,
        ("ordering", "insert", "inbox"): 1,
        ("ordering", "insert", "outbox"): 1,
        ("ordering", "select", "outbox"): 1,
        ("ordering", "delete", "outbox"): 1,
    }
    assert on_the_cursor[1] == {"ordering": 5}

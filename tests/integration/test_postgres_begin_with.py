"""On PostgreSQL a unit of work's first statement, when it answers only a count (the inbox
check-in of every handled message), goes to the server in one message with its ``BEGIN``
(``begin_with``): the same transaction, one round trip fewer. A value that could not be
written into the text without escaping keeps the statement prepared, behind its own
``BEGIN``; a first statement that fails leaves a transaction the rollback ends, and a
connection the next unit of work can use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from kernel.messages import Envelope
from tests.integration.test_sqlite_loop_connection import storage_of
from tests.support.harness import drop_database, open_database
from tests.support.services import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

#: What the server last received from the session that holds a given message's inbox row.
_LAST_SENT = text(
    "SELECT state, query FROM pg_stat_activity"
    " WHERE pid <> pg_backend_pid() AND query LIKE '%ordering_inbox%' AND query LIKE :about"
)
_ROWS = text("SELECT message_id FROM ordering_inbox WHERE message_id = :message_id")


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    database = await open_database(require_postgres())
    await database.create_all([messaging_tables("ordering").inbox.metadata])
    try:
        yield database
    finally:
        await database.dispose()
        await drop_database(database)


async def _seen_by_others(database: Database, message_id: str) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(_ROWS, {"message_id": message_id})).all())


async def _last_sent(database: Database, about: str) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(_LAST_SENT, {"about": f"%{about}%"})).all())


async def _warmed(database: Database) -> SqlStorage:
    """A storage whose statements run on asyncpg (from their second use): two messages
    handled first."""
    storage = storage_of(database)
    for number in range(2):
        async with _unit(storage, f"warm-{number}") as unit:
            assert not await unit.handled("ordering.h")
            unit.mark_handled("ordering.h")
            await unit.commit()
    return storage


@contextlib.asynccontextmanager
async def _unit(storage: SqlStorage, message_id: str) -> AsyncIterator[SqlUnitOfWork]:
    """A unit of work for one message, rolled back unless it committed (a failed test must
    not leave a transaction that holds the schema's removal)."""
    unit = storage.unit_of_work(Envelope(message_id=message_id, name="t", version=1))
    try:
        yield unit
    finally:
        await unit.rollback()


@pytest.mark.parametrize("commits", [True, False])
async def test_a_check_in_is_sent_with_its_begin_and_stays_in_its_transaction(
    database: Database, commits: bool
) -> None:
    storage = await _warmed(database)
    message_id = f"m-sent-with-begin-{commits}"
    async with _unit(storage, message_id) as unit:
        assert not await unit.handled("ordering.h")
        # One message: BEGIN and the check-in, and the session is inside that transaction.
        ((state, sent),) = await _last_sent(database, message_id)
        assert state == "idle in transaction"
        assert sent.startswith("BEGIN") and "INSERT INTO ordering_inbox" in sent
        # The row is the transaction's until it ends.
        assert await _seen_by_others(database, message_id) == []
        if commits:
            unit.mark_handled("ordering.h")
            await unit.commit()
    assert len(await _seen_by_others(database, message_id)) == (1 if commits else 0)
    async with _unit(storage, message_id) as again:
        assert await again.handled("ordering.h") is commits  # the count tells


@pytest.mark.parametrize(
    "message_id",
    ["m-'quote", "m-'); DROP TABLE ordering_inbox; --", "m-back\\slash", "m-é", "m-$1"],
)
async def test_a_value_that_needs_escaping_is_sent_as_a_parameter(
    database: Database, message_id: str
) -> None:
    storage = await _warmed(database)
    async with _unit(storage, message_id) as unit:
        assert not await unit.handled("ordering.h")
        ((state, sent),) = await _last_sent(database, "$2")
        assert state == "idle in transaction" and not sent.startswith("BEGIN")
        unit.mark_handled("ordering.h")
        await unit.commit()
    # Stored as it was given, and nothing else ran.
    assert [row[0] for row in await _seen_by_others(database, message_id)] == [message_id]
    async with _unit(storage, message_id) as again:
        assert await again.handled("ordering.h")


async def test_a_first_statement_that_fails_is_rolled_back_and_the_connection_works(
    database: Database,
) -> None:
    storage = storage_of(database)
    remember = storage.statements.remember  # the inbox row without ON CONFLICT
    row = {"handler": "ordering.h", "message_id": "m-twice", "handled_at": 1.5}
    async with database.connect() as connection, connection.begin():
        await connection.execute(remember, row)
    for _ in range(3):  # the first use through SQLAlchemy, then with its BEGIN
        with pytest.raises(IntegrityError) as raised:
            async with database.connect() as connection, connection.begin():
                await connection.execute(remember, row)
        assert raised.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
        # The error shows the statement with its placeholders, not the values written in.
        assert "m-twice" not in str(raised.value) and "$2" in str(raised.value)
        # The same kept connection serves the next unit of work, in a new transaction.
        async with database.connect() as connection, connection.begin():
            await connection.execute(remember, {**row, "message_id": "m-after"})
            assert await connection.scalar(text("SELECT count(*) FROM ordering_inbox")) == 2
            await connection.rollback()
    assert len(await _seen_by_others(database, "m-twice")) == 1

"""A query's unit of work reads and never writes; on PostgreSQL it runs without a
transaction, each statement on its own snapshot as under READ COMMITTED inside one, so that
a look at an order costs no BEGIN and COMMIT round trips (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.storage import write_transaction
from kernel.messages import new_envelope
from tests.integration.test_sqlite_loop_connection import storage_of
from tests.integration.test_sqlite_module_statements import ADD, ONE, metadata
from tests.support.harness import drop_database, open_database
from tests.support.services import require_postgres

pytestmark = pytest.mark.anyio

# When the statement's transaction began: the same for every statement of one transaction.
_BEGAN = text("SELECT transaction_timestamp()")
_TWO = text("SELECT 1 + 1")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "postgresql":
        url = require_postgres()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    database = await open_database(url)
    await database.create_all([metadata])
    try:
        yield database
    finally:
        await drop_database(database)


async def test_a_query_reads_what_was_committed_and_cannot_write(database: Database) -> None:
    storage = storage_of(database)
    async with write_transaction(database) as connection:
        await connection.execute(
            ADD, {"order_id": "o-1", "deadline": 1, "void_pending": False, "version": 1}
        )
    for _ in range(3):  # the first look through SQLAlchemy, the next ones on the hot path
        unit = storage.unit_of_work(new_envelope("ordering.GetOrder", 1), reads_only=True)
        connection = await unit.connection()
        (saga,) = (await connection.execute(ONE, {"order_id": "o-1"})).all()
        assert saga.order_id == "o-1"
        # A column the server names itself ("?column?" on PostgreSQL), from the second use
        # on the hot path too.
        assert (await connection.execute(_TWO)).one()[0] == 2
        with pytest.raises(RuntimeError, match="is a query: its handler must not write"):
            await connection.execute(
                ADD, {"order_id": "o-2", "deadline": 1, "void_pending": False, "version": 1}
            )
        await unit.rollback()
    unit = storage.unit_of_work(new_envelope("ordering.GetOrder", 1), reads_only=True)
    connection = await unit.connection()
    assert (await connection.execute(ONE, {"order_id": "o-2"})).first() is None
    await unit.commit()


@pytest.mark.postgres
async def test_on_postgresql_a_query_pays_no_transaction_and_a_command_does() -> None:
    database = await open_database(require_postgres())
    try:
        storage = storage_of(database)
        transactions: dict[bool, int] = {}
        for reads_only in (True, False):
            unit = storage.unit_of_work(new_envelope("ordering.X", 1), reads_only=reads_only)
            connection = await unit.connection()
            began = {await connection.scalar(_BEGAN) for _ in range(3)}
            transactions[reads_only] = len(began)
            await unit.commit()
        # The query's statements were each a transaction of their own; the command's ran in
        # one.
        assert transactions == {True: 3, False: 1}
    finally:
        await drop_database(database)

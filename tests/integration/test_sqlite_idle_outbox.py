"""An idle SQLite outbox costs no query: the relay's poll looks at the database's files, and
reads the table only when another process wrote to them, when a record waiting for a later
attempt comes due, or every ``QUIET_LOOK_SECONDS`` all the same (issue 12: "an idle or
drained outbox must cost no queries")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.statement_counts import StatementCounts, count_statements
from adapters.sqlalchemy.storage import write_transaction
from tests.integration.test_sqlite_hot_sql import row
from tests.integration.test_sqlite_loop_connection import storage_of

pytestmark = pytest.mark.anyio


async def _counted(path: Path) -> tuple[Database, StatementCounts]:
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.create_all([messaging_tables("ordering").inbox.metadata])
    counts = StatementCounts()
    for engine in (database.engine.sync_engine, database.loop_engine):
        if engine is not None:
            count_statements(engine, counts)
    return database, counts


async def _write(database: Database, *rows: dict[str, object]) -> None:
    async with write_transaction(database) as connection:
        await connection.execute(storage_of(database).statements.record, list(rows))


async def test_an_idle_poll_reads_nothing_until_another_process_writes(tmp_path: Path) -> None:
    ours, counts = await _counted(tmp_path / "shop.db")
    # Another process on the same file: its own engine and connections.
    theirs = Database(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    store = SqlOutboxStore(storage_of(ours))
    try:
        assert await store.due(now=1.0, limit=10, polled=True) == []
        counts.clear()
        for _ in range(5):
            assert await store.due(now=1.0, limit=10, polled=True) == []
        assert sum(counts.statements.values()) == 0, counts.statements
        await _write(theirs, row("a", "p1"))
        found = await store.due(now=1.0, limit=10, polled=True)
        assert [record.partition for record in found] == ["p1"]
        # A read this process asked for (a commit of its own) never trusts the files.
        counts.clear()
        assert len(await store.due(now=1.0, limit=10)) == 1
        assert sum(counts.statements.values()) == 1
    finally:
        await theirs.dispose()
        await ours.dispose()


async def test_a_record_waiting_for_a_later_attempt_is_read_when_it_comes_due(
    tmp_path: Path,
) -> None:
    database, counts = await _counted(tmp_path / "shop.db")
    store = SqlOutboxStore(storage_of(database))
    try:
        await _write(database, {**row("a", "p1"), "next_attempt_at": 50.0})
        assert await store.due(now=10.0, limit=10, polled=True) == []
        counts.clear()
        assert await store.due(now=49.0, limit=10, polled=True) == []
        assert sum(counts.statements.values()) == 0
        assert [r.partition for r in await store.due(now=50.0, limit=10, polled=True)] == ["p1"]
    finally:
        await database.dispose()


async def test_an_idle_outbox_is_read_again_after_a_while_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, counts = await _counted(tmp_path / "shop.db")
    store = SqlOutboxStore(storage_of(database))
    try:
        assert await store.due(now=1.0, limit=10, polled=True) == []
        later = time.monotonic() + 11.0
        monkeypatch.setattr("adapters.sqlalchemy.outbox.time.monotonic", lambda: later)
        counts.clear()
        assert await store.due(now=1.0, limit=10, polled=True) == []
        assert counts.statements[("ordering", "select", "outbox")] >= 1
    finally:
        await database.dispose()

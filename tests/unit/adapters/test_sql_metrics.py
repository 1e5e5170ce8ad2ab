"""``/metrics`` shows the SQL statements and transactions a process ran, when counting is on."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from adapters.http.sql_metrics import StatementCollector
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.statement_counts import (
    StatementCounts,
    count_begun_with,
    count_sent_along,
    count_statements,
)

pytestmark = pytest.mark.anyio


async def test_statements_and_transactions_are_counted_by_module(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    counts = StatementCounts()
    count_statements(database.engine.sync_engine, counts)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE ordering_outbox (id INTEGER)"))
            await connection.execute(text("INSERT INTO ordering_outbox VALUES (1)"))
            await connection.execute(text("INSERT INTO ordering_outbox VALUES (2)"))
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT id FROM ordering_outbox"))
    finally:
        await database.dispose()
    scraped = _scraped(counts)
    assert (
        'cleave_sql_statements_total{kind="insert",module="ordering",table="outbox"} 2.0' in scraped
    )
    assert (
        'cleave_sql_statements_total{kind="select",module="ordering",table="outbox"} 1.0' in scraped
    )
    # The writing transaction and the reading one.
    assert 'cleave_sql_transactions_total{module="ordering"} 2.0' in scraped


def test_transactions_begun_with_their_first_statement_are_counted_by_module() -> None:
    counts = StatementCounts()
    count_begun_with("INSERT INTO ordering_inbox (handler) VALUES ('h')", counts)
    count_begun_with("INSERT INTO \"payments_inbox\" (handler) VALUES ('h')", counts)
    count_begun_with("INSERT INTO ordering_inbox (handler) VALUES ('i')", counts)
    scraped = _scraped(counts)
    assert 'cleave_sql_begun_with_statement_total{module="ordering"} 2.0' in scraped
    assert 'cleave_sql_begun_with_statement_total{module="payments"} 1.0' in scraped
    counts.clear()
    assert not counts.begun_with


def test_statements_sent_along_with_another_are_counted_by_module() -> None:
    counts = StatementCounts()
    count_sent_along("UPDATE ordering_sagas SET step=$1 WHERE order_id = $2", counts)
    count_sent_along("UPDATE inventory_stock SET on_hand=$1 WHERE sku = $2", counts)
    count_sent_along("INSERT INTO inventory_reservations (order_id) VALUES ($1)", counts)
    scraped = _scraped(counts)
    assert 'cleave_sql_sent_along_statement_total{module="inventory"} 2.0' in scraped
    assert 'cleave_sql_sent_along_statement_total{module="ordering"} 1.0' in scraped
    counts.clear()
    assert not counts.sent_along


def _scraped(counts: StatementCounts) -> str:
    """What ``/metrics`` answers for ``counts``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatementCollector(counts))
    return generate_latest(registry).decode()

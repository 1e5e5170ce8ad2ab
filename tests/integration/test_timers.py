"""A timer of a module with several instances fires once per period, not once per instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.storage import SqlStorage
from entrypoints.bootstrap import shop_contracts
from kernel.clock import Clock
from kernel.codec import Codec
from kernel.registry import Registry
from tests.support.harness import drop_database, open_database

pytestmark = pytest.mark.anyio


class FrozenClock(Clock):
    def __init__(self, now: float) -> None:
        self.time = now

    def now(self) -> float:
        return self.time


async def claims_per_period(database: Database) -> list[int]:
    """Three instances tick together for five periods; how many fired in each."""
    await database.create_all([messaging_tables("ordering").metadata])
    clock = FrozenClock(1_000.0)
    registry = Registry([], shop_contracts())
    instances = [
        SqlStorage(database, "ordering", registry, Codec([], "json"), clock) for _ in range(3)
    ]
    fired = []
    for _ in range(5):
        claims = await asyncio.gather(
            *(storage.claim_tick("ordering.ExpireOrders", 1.0) for storage in instances)
        )
        fired.append(sum(claims))
        clock.time += 1.0
    return fired


async def test_one_instance_fires_in_each_period_on_sqlite(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'ordering.db'}")
    try:
        assert await claims_per_period(database) == [1, 1, 1, 1, 1]
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_one_instance_fires_in_each_period_on_postgresql(postgres_url: str) -> None:
    database = await open_database(postgres_url)
    try:
        assert await claims_per_period(database) == [1, 1, 1, 1, 1]
    finally:
        await drop_database(database)

"""Running the shop in tests: bootstrapped with real parts, driven from sync or async code."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from sqlalchemy import text

from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import TransportName, bootstrap, create_tables
from entrypoints.settings import Settings
from kernel.module import Module
from kernel.runtime import Runtime

T = TypeVar("T")

#: Settings that keep tests fast without faking anything: cheap password hashing, quick
#: retries, short payment timeouts.
TEST_SETTINGS = Settings(
    password_hash_cost="low",
    delivery_backoff_seconds=0.01,
    payment_timeout_seconds=0.5,
    payment_attempts=2,
    payment_breaker_threshold=1000,
    payment_breaker_cooldown_seconds=0.5,
    order_timeout_seconds=30.0,
)


async def open_database(url: str) -> Database:
    """A fresh, empty database: a SQLite file as given, or a new PostgreSQL schema."""
    if url.startswith("postgres"):
        database = Database(url, schema=f"t_{uuid.uuid4().hex[:12]}")
    else:
        database = Database(url)
    return database


async def drop_database(database: Database) -> None:
    if database.schema is not None and not database.is_sqlite:
        async with database.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE'))
    await database.dispose()


@contextlib.asynccontextmanager
async def running_shop(
    database_url: str,
    *,
    transport: TransportName = "inprocess",
    settings: Settings = TEST_SETTINGS,
    modules: Sequence[Module] | None = None,
    **ports: Any,
) -> AsyncIterator[Runtime]:
    """A started runtime over a fresh database; stopped and dropped afterwards."""
    database = await open_database(database_url)
    try:
        await create_tables(database, modules)
        runtime = bootstrap(
            database=database, transport=transport, settings=settings, modules=modules, **ports
        )
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop(grace=5)
    finally:
        await drop_database(database)


class SyncDriver:
    """Drives async code from synchronous test code (hypothesis rules) on one event loop.

    Create one per test and share it between the examples of a state machine: one loop
    per test, never one per step.
    """

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return self._runner.run(wrapper())

    def close(self) -> None:
        self._runner.close()

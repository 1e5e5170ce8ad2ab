"""A unit of work that lost a concurrency race runs again so that it cannot lose again: the
dispatcher asks its storage for a rerun, and SQLite's storage then gives it the writer gate
with its connection, before the handler reads anything (the kernel names no SQLite)."""

from __future__ import annotations

import sys
from pathlib import Path

import punq
import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.storage import SqlStorage
from kernel import Command, ConcurrencyConflict, Transaction
from kernel.clock import SystemClock
from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, message_name
from kernel.module import Module
from kernel.registry import Registry


class Race(Command[None], frozen=True, kw_only=True, tag="racing.Race"):
    pass


class Runs:
    """Whether the writer gate was held when each run of the handler got its connection."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.gate_held: list[bool] = []


async def race(command: Race, transaction: Transaction, runs: Runs) -> None:
    await transaction.connection()
    writer = runs.database.writer
    assert writer is not None
    runs.gate_held.append(writer._lock.locked())
    if len(runs.gate_held) == 1:
        raise ConcurrencyConflict("lost a race")


@pytest.mark.anyio
async def test_a_rerun_after_a_lost_race_holds_the_sqlite_writer_from_the_start(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'race.db'}")
    try:
        module = Module(name="racing", contracts=sys.modules[__name__], handlers={Race: race})
        registry = Registry([module], {})
        codec = Codec(registry.message_types())
        storage = SqlStorage(database, "racing", registry, codec, SystemClock())
        runs = Runs(database)
        container = punq.Container()
        container.register(Transaction, instance=Transaction())
        container.register(Runs, instance=runs)
        dispatcher = Dispatcher(registry, {"racing": storage}, container.resolve)
        envelope = Envelope(message_id="r-1", name=message_name(Race), version=1)
        await dispatcher.request(Race(), envelope)
    finally:
        await database.dispose()
    assert runs.gate_held == [False, True]

"""Several instances of a module on one PostgreSQL outbox: each record is delivered once.

Two relays, as two instances of a module would run them, read the same outbox table under
load. Claims (``FOR UPDATE SKIP LOCKED`` and a lease) must keep them from delivering a record
twice, keep deliveries of one partition in order across both, and let one instance take over
the records of an instance that stopped. On SQLite a second process on the same file is
refused instead.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.single_instance import claim_sqlite_file
from adapters.sqlalchemy.storage import SqlStorage
from entrypoints.bootstrap import shop_contracts
from kernel.clock import SystemClock
from kernel.codec import Codec
from kernel.errors import ConfigurationError
from kernel.messages import Envelope, Message
from kernel.module import declared_messages
from kernel.outbox import RetryPolicy
from kernel.registry import Registry
from kernel.relay import Relay
from modules.inventory.contracts import StockReserved
from tests.support.harness import drop_database, open_database

pytestmark = pytest.mark.anyio

RECORDS = 400
PARTITIONS = 40


def _storage(database: Database) -> SqlStorage:
    contracts = shop_contracts()
    registry = Registry([], contracts)
    codec = Codec([cls for c in contracts.values() for cls in declared_messages(c)], "json")
    return SqlStorage(database, "inventory", registry, codec, SystemClock())


async def _fill(storage: SqlStorage) -> None:
    codec = storage.codec
    rows = []
    for number in range(RECORDS):
        partition = f"order-{number % PARTITIONS}"
        envelope = Envelope(message_id=f"m-{number:04d}", name="inventory.StockReserved")
        rows.append(
            {
                "message_id": envelope.message_id,
                "target": "ordering",
                "name": envelope.name,
                "partition": partition,
                "envelope": codec.encode_envelope(envelope).decode(),
                "body": codec.encode_body(StockReserved(order_id=partition)).decode(),
                "attempts": 0,
                "next_attempt_at": 0.0,
                "created_at": 0.0,
            }
        )
    async with storage.database.engine.begin() as connection:
        await connection.execute(storage.tables.outbox.insert(), rows)


@pytest.mark.postgres
async def test_two_instances_never_deliver_a_record_twice(postgres_url: str) -> None:
    database = await open_database(postgres_url)
    try:
        await database.create_all([messaging_tables("inventory").metadata])
        storage = _storage(database)
        await _fill(storage)
        delivered: Counter[str] = Counter()
        order: dict[str, list[int]] = defaultdict(list)

        async def deliver(target: str, envelope: Envelope, message: Message) -> None:
            delivered[envelope.message_id] += 1
            order[getattr(message, "order_id", "")].append(int(envelope.message_id[2:]))
            await asyncio.sleep(random.uniform(0, 0.004))  # deliveries overlap

        policy = RetryPolicy(max_attempts=3, base_delay=0.01)
        relays = [
            Relay(name, SqlOutboxStore(storage), deliver, SystemClock(), policy, poll_interval=0.01)
            for name in ("inventory-1", "inventory-2")
        ]
        for relay in relays:
            relay.start()
        for _ in range(3000):
            if all([await relay.idle() for relay in relays]):
                break
            await asyncio.sleep(0.01)
        for relay in relays:
            await relay.stop()
    finally:
        await drop_database(database)
    assert len(delivered) == RECORDS, f"{RECORDS - len(delivered)} records never delivered"
    repeated = {message_id: count for message_id, count in delivered.items() if count > 1}
    assert not repeated, f"{len(repeated)} delivered more than once, e.g. {list(repeated)[:5]}"
    for partition, numbers in order.items():
        assert numbers == sorted(numbers), f"{partition} out of order: {numbers}"


@pytest.mark.postgres
async def test_an_instance_takes_over_the_claims_of_one_that_stopped(postgres_url: str) -> None:
    database = await open_database(postgres_url)
    try:
        await database.create_all([messaging_tables("inventory").metadata])
        storage = _storage(database)
        await _fill(storage)
        first = SqlOutboxStore(storage, lease_seconds=60)
        claimed = await first.due(SystemClock().now(), 10)
        second = SqlOutboxStore(storage, lease_seconds=60)
        # Claimed records are invisible to the other instance while the lease holds...
        others = await second.due(SystemClock().now(), RECORDS)
        assert {r.id for r in claimed}.isdisjoint(r.id for r in others)
        # ... and come back as soon as their claimer releases them.
        await second.release(others)
        await first.release(claimed)
        again = await second.due(SystemClock().now(), RECORDS)
        assert {r.id for r in claimed} <= {r.id for r in again}
    finally:
        await drop_database(database)


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}")
    held = claim_sqlite_file(database, "inventory (first)")
    try:
        with pytest.raises(ConfigurationError, match="SQLite allows one process per file"):
            claim_sqlite_file(database, "inventory (second)")
    finally:
        held.release()
        await database.dispose()
    claim_sqlite_file(database, "inventory (after)").release()


@pytest.mark.postgres
async def test_a_renewed_claim_outlasts_its_first_lease(postgres_url: str) -> None:
    database = await open_database(postgres_url)
    try:
        await database.create_all([messaging_tables("inventory").metadata])
        storage = _storage(database)
        await _fill(storage)
        clock = SystemClock()
        first, second = SqlOutboxStore(storage, lease_seconds=1), SqlOutboxStore(storage)
        claimed = {record.id for record in await first.due(clock.now(), 5)}
        await asyncio.sleep(0.6)  # the delivery is slow
        await first.renew([r for r in await _all(second) if r.id in claimed])
        # Past the first lease (0.6 + 0.9 > 1 s), the renewed claims still hold...
        later = await second.due(clock.now() + 0.9, RECORDS)
        assert claimed.isdisjoint(record.id for record in later)
        # ... and end one lease after the renewal.
        expired = await second.due(clock.now() + 1.5, RECORDS)
        assert claimed <= {record.id for record in expired}
    finally:
        await drop_database(database)


async def _all(store: SqlOutboxStore) -> list[Any]:
    """Every record, claimed or not (a renewal needs the records, not just their ids)."""
    from adapters.sqlalchemy.outbox import _id

    outbox = store._tables.outbox
    async with store._database.engine.connect() as connection:
        rows = (await connection.execute(outbox.select())).all()
    return [store._record(row) for row in sorted(rows, key=_id)]

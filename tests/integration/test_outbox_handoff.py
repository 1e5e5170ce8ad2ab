"""What a unit of work commits reaches its relay without the relay reading it back (issue 12),
in the order of its (target, partition), on SQLite and PostgreSQL.

The reads the relay asks for are counted (its idle polls are not): a record handed over needs
none. The order rules are the relay's usual ones: a record behind an older one of its (target,
partition) waits for it, also when that older one is due later (a retry) or is not the
relay's to deliver (another instance's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.storage import SqlStorage
from entrypoints.bootstrap import shop_contracts
from kernel.clock import SystemClock
from kernel.codec import Codec
from kernel.messages import Envelope, Message
from kernel.module import declared_messages
from kernel.outbox import OutboxRecord, RetryPolicy
from kernel.registry import Registry
from kernel.relay import Relay
from modules.inventory.contracts import ReserveStock, StockLine
from tests.support.harness import drop_database, open_database

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.1)


class CountedStore(SqlOutboxStore):
    """The outbox store, counting the reads the relay asks for (not its idle polls)."""

    reads = 0

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        found = await super().due(now, limit, skip, polled=polled)
        if not polled:
            self.reads += 1
        return found


@dataclass
class Deliveries:
    """The relay's deliver function: records what arrives (each record's label, its sku, and
    the attempt), fails or blocks as told (by label)."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    fail: Callable[[str, int], bool] = lambda label, attempt: False
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    async def __call__(self, target: str, envelope: Envelope, message: Message) -> None:
        assert isinstance(message, ReserveStock)
        label = message.lines[0].sku
        self.seen.append((label, envelope.attempt))
        gate = self.gates.get(label)
        if gate is not None:
            await gate.wait()
        if self.fail(label, envelope.attempt):
            raise RuntimeError("not this time")

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.seen]


@dataclass
class Outbox:
    storage: SqlStorage
    store: CountedStore
    relay: Relay
    deliveries: Deliveries

    async def commit(self, *labels: str, partition: str = "order-1") -> None:
        """One unit of work emitting one record per label, all of ``partition``."""
        unit = self.storage.unit_of_work(Envelope(message_id=f"cause-{labels[0]}", name="t"))
        for label in labels:
            unit.emit(ReserveStock(order_id=partition, lines=[StockLine(sku=label, quantity=1)]))
        await unit.commit()

    async def settled(self, count: int) -> None:
        for _ in range(1000):
            if len(self.deliveries.seen) >= count and await self.relay.idle():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not settled: {self.deliveries.seen}")


@pytest.fixture
async def outbox(database_url: str) -> AsyncIterator[Outbox]:
    database: Database = await open_database(database_url)
    contracts = shop_contracts()
    codec = Codec([cls for c in contracts.values() for cls in declared_messages(c)], "json")
    storage = SqlStorage(database, "ordering", Registry([], contracts), codec, SystemClock())
    await database.create_all([storage.tables.metadata])
    store = CountedStore(storage)
    deliveries = Deliveries()
    relay = Relay("ordering", store, deliveries, SystemClock(), FAST, poll_interval=0.2)
    storage.relay, storage.on_commit = relay, relay.notify
    relay.start()
    await asyncio.sleep(0.05)  # its first look at the (empty) outbox
    store.reads = 0
    try:
        yield Outbox(storage, store, relay, deliveries)
    finally:
        await relay.stop(grace=1)
        await drop_database(database)


async def test_committed_records_are_delivered_without_a_read(outbox: Outbox) -> None:
    await outbox.commit("A-1", "B-1", partition="order-1")
    await outbox.commit("C-1", partition="order-2")
    await outbox.settled(3)
    labels = outbox.deliveries.labels
    assert sorted(labels) == ["A-1", "B-1", "C-1"]
    assert labels.index("A-1") < labels.index("B-1")
    assert outbox.store.reads == 0
    assert await outbox.store.pending() == 0


async def test_a_record_waits_for_the_older_one_of_its_partition_in_flight(
    outbox: Outbox,
) -> None:
    gate = outbox.deliveries.gates["FIRST"] = asyncio.Event()
    await outbox.commit("FIRST")
    await asyncio.sleep(0.05)  # in flight, held at the gate
    await outbox.commit("SECOND")
    await outbox.commit("OTHER", partition="order-2")
    await asyncio.sleep(0.1)
    # Another partition goes on; the same one waits.
    assert outbox.deliveries.labels == ["FIRST", "OTHER"]
    gate.set()
    await outbox.settled(3)
    assert outbox.deliveries.labels == ["FIRST", "OTHER", "SECOND"]
    assert outbox.store.reads == 0


async def test_a_record_behind_one_that_failed_waits_for_its_retry(outbox: Outbox) -> None:
    deliveries = outbox.deliveries
    gate = deliveries.gates["FIRST"] = asyncio.Event()
    deliveries.fail = lambda label, attempt: label == "FIRST" and attempt == 1
    await outbox.commit("FIRST")
    await asyncio.sleep(0.05)
    await outbox.commit("SECOND")
    gate.set()
    await outbox.settled(3)
    # The first delivery failed once: its retry comes before the record behind it.
    assert deliveries.seen == [("FIRST", 1), ("FIRST", 2), ("SECOND", 1)]
    assert await outbox.store.pending() == 0


async def test_a_record_behind_one_the_relay_does_not_hold_waits_for_it(outbox: Outbox) -> None:
    # An older record of the partition that this relay does not hold (another instance's,
    # or one written while it was stopped): committed without handing it over.
    storage = outbox.storage
    storage.relay = None
    await outbox.commit("FIRST")
    storage.relay = outbox.relay
    await outbox.commit("SECOND", "THIRD")
    await outbox.settled(3)
    # A read the relay asked for found the first, and it went first.
    assert outbox.deliveries.labels == ["FIRST", "SECOND", "THIRD"]
    assert outbox.store.reads >= 1
    assert await outbox.store.pending() == 0


async def test_records_of_one_partition_in_one_unit_keep_their_order(outbox: Outbox) -> None:
    gate = outbox.deliveries.gates["A"] = asyncio.Event()
    await outbox.commit("A", "B", "C")
    await asyncio.sleep(0.1)
    assert outbox.deliveries.labels == ["A"], "a record overtook the first of its partition"
    gate.set()
    await outbox.settled(3)
    assert outbox.deliveries.labels == ["A", "B", "C"]
    assert outbox.store.reads == 0


@pytest.mark.postgres
async def test_a_handed_record_is_claimed_from_other_instances(postgres_url: str) -> None:
    database = await open_database(postgres_url)
    try:
        contracts = shop_contracts()
        codec = Codec([cls for c in contracts.values() for cls in declared_messages(c)], "json")
        storage = SqlStorage(database, "ordering", Registry([], contracts), codec, SystemClock())
        await database.create_all([storage.tables.metadata])
        deliveries = Deliveries(gates={"FIRST": asyncio.Event()})
        relay = Relay("ordering", SqlOutboxStore(storage), deliveries, SystemClock(), FAST)
        storage.relay = relay
        relay.start()
        await asyncio.sleep(0.05)  # its first read, of the empty outbox, is over
        unit = storage.unit_of_work(Envelope(message_id="cause", name="t"))
        unit.emit(ReserveStock(order_id="order-1", lines=[StockLine(sku="FIRST", quantity=1)]))
        await unit.commit()
        await asyncio.sleep(0.05)
        # Another instance's relay reads the outbox: the record is this one's claim.
        other = SqlOutboxStore(storage)
        assert await other.due(SystemClock().now(), 10) == []
        deliveries.gates["FIRST"].set()
        await relay.stop(grace=1)
        assert deliveries.seen == [("FIRST", 1)]
    finally:
        await drop_database(database)

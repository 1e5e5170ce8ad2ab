"""The relay reads its outbox only when something calls for it, and removes delivered
records in batches (issue 12): a commit, or a settled record that others wait behind, and
the poll. The same holds for a store that several instances share and claim records from
(PostgreSQL's): one read per commit, not one more after every delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from adapters.memory import MemoryOutbox
from kernel.clock import SystemClock
from kernel.messages import Envelope, Message
from kernel.outbox import OutboxRecord, RetryPolicy
from kernel.relay import Relay
from kernel.routing import PendingDelivery
from modules.inventory.contracts import StockReserved

pytestmark = pytest.mark.anyio

#: No poll during a test: every read must come from a commit or a settled record.
NO_POLL = 60.0


class CountingOutbox(MemoryOutbox):
    """A memory outbox that counts the relay's reads and removals."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.removals = 0

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        self.reads += 1
        return await super().due(now, limit, skip, polled=polled)

    async def remove_delivered(self, records: Sequence[OutboxRecord]) -> None:
        self.removals += 1
        await super().remove_delivered(records)


class ClaimingOutbox(CountingOutbox):
    """As a store shared by several instances: claims are renewed, other instances write."""

    def __init__(self) -> None:
        super().__init__()
        self.renew_interval = 10.0


@pytest.fixture(params=["only reader", "claims"])
def outbox(request: pytest.FixtureRequest) -> CountingOutbox:
    return CountingOutbox() if request.param == "only reader" else ClaimingOutbox()


def delivery(order_id: str, target: str, index: int) -> PendingDelivery:
    envelope = Envelope(message_id=f"{order_id}-{target}-{index}", name="inventory.StockReserved")
    return PendingDelivery(target, envelope, StockReserved(order_id=order_id), order_id)


async def settled(relay: Relay) -> None:
    async with asyncio.timeout(10):
        while not await relay.idle():  # noqa: ASYNC110 (idle() is a question, not an event)
            await asyncio.sleep(0.005)


async def test_a_chain_of_reactions_costs_one_read_per_commit(outbox: CountingOutbox) -> None:
    """Each delivery commits the next record (as a saga does): the relay reads once per
    commit, not once more after each delivery, and removes the records in fewer writes."""
    seen: list[str] = []

    async def deliver(target: str, envelope: Envelope, message: Message) -> None:
        seen.append(envelope.message_id)
        step = len(seen)
        if step < 5:
            outbox.add([delivery("o1", f"step{step}", step)])

    relay = Relay("test", outbox, deliver, SystemClock(), RetryPolicy(), poll_interval=NO_POLL)
    outbox.on_add = relay.notify
    outbox.add([delivery("o1", "step0", 0)])
    relay.start()
    await settled(relay)
    await relay.stop()
    assert len(seen) == 5 and await outbox.pending() == 0
    assert outbox.reads <= 5 + 1  # one per record, and the first look at start
    assert outbox.removals < 5


async def test_a_record_behind_one_in_flight_goes_once_that_one_is_settled(
    outbox: CountingOutbox,
) -> None:
    """Deliveries of one (target, partition) keep their order; the second needs no poll."""
    seen: list[str] = []
    release, first_seen = asyncio.Event(), asyncio.Event()

    async def deliver(target: str, envelope: Envelope, message: Message) -> None:
        seen.append(envelope.message_id)
        first_seen.set()
        if envelope.message_id.endswith("-0"):
            outbox.add([delivery("o1", "inventory", 1)])  # same target, same partition
            await release.wait()

    relay = Relay("test", outbox, deliver, SystemClock(), RetryPolicy(), poll_interval=NO_POLL)
    outbox.on_add = relay.notify
    outbox.add([delivery("o1", "inventory", 0)])
    relay.start()
    async with asyncio.timeout(10):
        await first_seen.wait()
    await asyncio.sleep(0.05)
    assert seen == ["o1-inventory-0"]  # the second waits behind the first
    release.set()
    await settled(relay)
    await relay.stop()
    assert seen == ["o1-inventory-0", "o1-inventory-1"]

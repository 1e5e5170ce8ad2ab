"""The relay delivers after commit, retries what failed, dead-letters what never will."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

import pytest

from adapters.memory import MemoryOutbox
from kernel.clock import SystemClock
from kernel.errors import NotFound, PoisonMessage, Unavailable
from kernel.messages import Command, Envelope, Message
from kernel.outbox import OutboxRecord, RetryPolicy
from kernel.relay import Relay
from kernel.routing import PendingDelivery
from modules.inventory.contracts import StockReserved

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)


def delivery(order_id: str, target: str = "shop.on_reserved", index: int = 0) -> PendingDelivery:
    envelope = Envelope(message_id=f"{order_id}-{index}", name="inventory.StockReserved")
    return PendingDelivery(target, envelope, StockReserved(order_id=order_id), order_id)


class Recorder:
    """A deliver function that fails as told, and remembers what it saw."""

    def __init__(self, fail: Callable[[Envelope, int], Exception | None] | None = None) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.fail = fail or (lambda envelope, attempt: None)

    async def __call__(self, target: str, envelope: Envelope, message: Message) -> None:
        self.seen.append((target, envelope.message_id, envelope.attempt))
        await asyncio.sleep(0)
        error = self.fail(envelope, envelope.attempt)
        if error is not None:
            raise error


async def run_until_settled(outbox: MemoryOutbox, deliver: Recorder, **kwargs: object) -> Relay:
    relay = Relay("test", outbox, deliver, SystemClock(), FAST, poll_interval=0.005, **kwargs)  # type: ignore[arg-type]
    outbox.on_add = relay.notify
    relay.start()
    for _ in range(2000):
        if await relay.idle():
            break
        await asyncio.sleep(0.002)
    await relay.stop()
    return relay


async def test_a_failing_delivery_is_retried_until_it_succeeds() -> None:
    outbox = MemoryOutbox()
    outbox.add([delivery("o1")])
    deliver = Recorder(lambda envelope, attempt: RuntimeError("flaky") if attempt < 3 else None)
    await run_until_settled(outbox, deliver)
    assert [attempt for _, _, attempt in deliver.seen] == [1, 2, 3]
    assert await outbox.pending() == 0 and outbox.dead_letters == []


async def test_a_delivery_that_keeps_failing_becomes_a_dead_letter_with_its_reason() -> None:
    outbox = MemoryOutbox()
    outbox.add([delivery("o1")])
    deliver = Recorder(lambda envelope, attempt: Unavailable("provider down"))
    await run_until_settled(outbox, deliver)
    assert len(deliver.seen) == FAST.max_attempts
    (letter,) = outbox.dead_letters
    assert letter.attempts == FAST.max_attempts
    assert "gave up after 4 attempts" in letter.reason and "provider down" in letter.reason


async def test_a_domain_error_is_final_and_never_retried() -> None:
    outbox = MemoryOutbox()
    outbox.add([delivery("o1")])
    deliver = Recorder(lambda envelope, attempt: NotFound("no reservation"))
    await run_until_settled(outbox, deliver)
    assert len(deliver.seen) == 1
    (letter,) = outbox.dead_letters
    assert "NotFound: no reservation (final)" in letter.reason


async def test_a_poison_message_goes_straight_to_the_dead_letters() -> None:
    outbox = MemoryOutbox()
    outbox.add([delivery("o1"), delivery("o2")])
    deliver = Recorder(
        lambda envelope, attempt: (
            PoisonMessage("wrong version") if envelope.message_id.startswith("o1") else None
        )
    )
    await run_until_settled(outbox, deliver)
    assert [letter.reason for letter in outbox.dead_letters] == ["wrong version"]
    assert ("shop.on_reserved", "o2-0", 1) in deliver.seen  # the relay went on


async def test_deliveries_of_one_partition_keep_their_order_through_failures() -> None:
    outbox = MemoryOutbox()
    outbox.add([delivery("o1", index=index) for index in range(5)])
    outbox.add([delivery("o2", index=index) for index in range(5)])
    # The first message of o1 fails twice: the later ones of o1 must wait for it.
    deliver = Recorder(
        lambda envelope, attempt: (
            RuntimeError("once more") if envelope.message_id == "o1-0" and attempt < 3 else None
        )
    )
    await run_until_settled(outbox, deliver)
    succeeded = [message_id for _, message_id, _ in deliver.seen]
    o1 = [message_id for message_id in succeeded if message_id.startswith("o1")]
    assert o1 == ["o1-0", "o1-0", "o1-0", "o1-1", "o1-2", "o1-3", "o1-4"]
    o2 = [message_id for message_id in succeeded if message_id.startswith("o2")]
    assert o2 == [f"o2-{index}" for index in range(5)]


async def test_unrelated_deliveries_do_not_wait_for_each_other() -> None:
    outbox = MemoryOutbox()
    release = asyncio.Event()

    async def slow_first(target: str, envelope: Envelope, message: Message) -> None:
        if envelope.message_id == "o1-0":
            await release.wait()

    relay = Relay("test", outbox, slow_first, SystemClock(), FAST, poll_interval=0.005)
    outbox.on_add = relay.notify
    relay.start()
    outbox.add([delivery("o1"), delivery("o2")])
    for _ in range(500):
        if await outbox.pending() == 1:
            break
        await asyncio.sleep(0.002)
    assert await outbox.pending() == 1  # o2 went through while o1 was still in flight
    release.set()
    await relay.stop()
    assert await outbox.pending() == 0


async def test_stopping_leaves_undelivered_records_in_the_outbox() -> None:
    outbox = MemoryOutbox()
    started = asyncio.Event()

    async def hang(target: str, envelope: Envelope, message: Message) -> None:
        started.set()
        await asyncio.sleep(60)

    relay = Relay("test", outbox, hang, SystemClock(), FAST, poll_interval=0.005)
    relay.start()
    outbox.add([delivery("o1")])
    relay.notify()
    await started.wait()
    await relay.stop(grace=0.05)
    assert await outbox.pending() == 1 and outbox.dead_letters == []


def test_backoff_grows_and_has_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=30.0)
    delays = [policy.delay(attempt) for attempt in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({policy.delay(3) for _ in range(20)}) > 1


class Compensate(Command[None], frozen=True, kw_only=True, tag="test.Compensate"):
    """A compensation: retried for as long as it fails for now."""

    retry_forever = True
    order_id: str


async def test_a_compensation_never_gives_up_while_it_fails_for_now() -> None:
    outbox = MemoryOutbox()
    envelope = Envelope(message_id="c-1", name="test.Compensate")
    outbox.add([PendingDelivery("payments", envelope, Compensate(order_id="o1"), "o1")])
    # The circuit is open for three times as many attempts as anything else gets.
    deliver = Recorder(
        lambda envelope, attempt: Unavailable("circuit open") if attempt <= 12 else None
    )
    await run_until_settled(outbox, deliver)
    assert len(deliver.seen) == 13
    assert await outbox.pending() == 0 and outbox.dead_letters == []


async def test_a_compensation_refused_for_good_is_still_a_dead_letter() -> None:
    outbox = MemoryOutbox()
    envelope = Envelope(message_id="c-2", name="test.Compensate")
    outbox.add([PendingDelivery("payments", envelope, Compensate(order_id="o2"), "o2")])
    await run_until_settled(outbox, Recorder(lambda envelope, attempt: NotFound("no order")))
    [letter] = outbox.dead_letters
    assert letter.attempts == 1 and "NotFound" in letter.reason


class Reads(MemoryOutbox):
    """An outbox that remembers, for each read, whether it was only the relay's poll."""

    def __init__(self) -> None:
        super().__init__()
        self.polled: list[bool] = []

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        self.polled.append(polled)
        return await super().due(now, limit, skip, polled=polled)


async def test_only_the_idle_poll_is_a_polled_read_and_a_commit_never_is() -> None:
    # A store may answer a polled read from what it knows changed (SQLite's files); a read
    # for a commit of this process must always look at the table.
    outbox = Reads()
    deliver = Recorder()
    relay = Relay("test", outbox, deliver, SystemClock(), FAST, poll_interval=0.02)
    outbox.on_add = relay.notify
    relay.start()
    try:
        await asyncio.sleep(0.1)  # idle: the first read, then polls
        assert True in outbox.polled
        outbox.polled.clear()
        outbox.add([delivery("o1")])
        for _ in range(200):
            if deliver.seen:
                break
            await asyncio.sleep(0.001)
        assert deliver.seen
        # The read that found the committed record was not a polled one.
        assert outbox.polled[0] is False
    finally:
        await relay.stop()

"""An outbox in memory: for modules without tables, and for events published outside any
handler. It survives failed deliveries (the relay retries them), not a crash."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from kernel.outbox import OutboxRecord
from kernel.routing import PendingDelivery


@dataclass(slots=True)
class DeadLetter:
    """A delivery that failed for good, with why."""

    record: OutboxRecord
    attempts: int
    reason: str


@dataclass
class MemoryOutbox:
    """An outbox in memory, for modules without tables and for events published outside
    any handler. It survives failed deliveries, not a crash."""

    records: dict[int, tuple[OutboxRecord, float]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Told the (target, partition) pairs of the records each ``add`` wrote.
    on_add: Callable[[set[tuple[str, str | None]]], None] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: No claims to renew: nobody else reads a memory outbox.
    renew_interval: float | None = None

    def add(self, deliveries: Sequence[PendingDelivery]) -> None:
        for delivery in deliveries:
            record_id = next(self._ids)
            record = OutboxRecord(
                id=record_id,
                target=delivery.target,
                envelope=delivery.envelope,
                message=delivery.message,
                partition=delivery.partition,
            )
            self.records[record_id] = (record, 0.0)
        if self.on_add is not None:
            self.on_add({(delivery.target, delivery.partition) for delivery in deliveries})

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        oldest: dict[tuple[str, str], OutboxRecord | None] = {}
        ready: list[OutboxRecord] = []
        for record, at in self.records.values():  # dicts keep insertion (= id) order
            if record.partition is not None:
                key = (record.target, record.partition)
                if key in oldest:
                    first = oldest[key]
                    if first is not None:
                        first.followed = True  # this one waits behind it
                        oldest[key] = None
                    continue
                oldest[key] = record
            if at <= now and record.id not in skip:
                record.followed = False
                ready.append(record)
                if len(ready) >= limit:
                    # The records behind were not looked at: whether they follow is unknown.
                    for taken in ready:
                        if taken.followed is False:
                            taken.followed = None
                    break
        return ready

    async def remove_delivered(self, records: Sequence[OutboxRecord]) -> None:
        for record in records:
            self.records.pop(record.id, None)

    async def retry_later(self, record: OutboxRecord, attempts: int, at: float, error: str) -> None:
        record.attempts = attempts
        self.records[record.id] = (record, at)

    async def dead_letter(self, record: OutboxRecord, attempts: int, reason: str) -> None:
        self.records.pop(record.id, None)
        self.dead_letters.append(DeadLetter(record, attempts, reason))

    async def pending(self) -> int:
        return len(self.records)

    async def release(self, records: Sequence[OutboxRecord]) -> None:
        return None  # nobody else reads a memory outbox

    async def renew(self, records: Sequence[OutboxRecord]) -> None:
        return None

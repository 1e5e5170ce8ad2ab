"""An outbox as the relay sees it: the records waiting (``OutboxRecord``), where they are
kept (``OutboxStore``, which also keeps the relay's verdict: delivered, retry later, dead
letter), and how patiently a failed delivery is tried again (``RetryPolicy``)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from kernel.messages import Envelope, Message


@dataclass(slots=True)
class OutboxRecord:
    """One pending delivery as the store hands it to the relay."""

    id: int
    target: str
    envelope: Envelope | None
    message: Message | None
    partition: str | None = None
    attempts: int = 0
    #: Why the record cannot be decoded (it goes to the dead letters, with its ``raw`` bytes).
    poison: str | None = None
    raw: bytes = b""
    #: Whether a newer record of its (target, partition) waited behind it when read (None:
    #: unknown); settling one nobody waits behind needs no new read.
    followed: bool | None = None
    #: For a record handed to the relay as it was committed (``Relay.offer``): the id of the
    #: newest older record of its (target, partition) still in the outbox then (None: none).
    behind: int | None = None


class OutboxStore(Protocol):
    """Where an outbox lives (a SQL table, or memory for modules without tables)."""

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        """Up to ``limit`` records due by ``now``, each the oldest of its (target, partition),
        leaving out the ids in ``skip`` (those the relay is busy with). ``polled``: nothing
        in this process asked for the read (the relay's idle poll, for records written by
        other processes or due later), so a store may answer from what it knows changed."""
        ...

    async def remove_delivered(self, records: Sequence[OutboxRecord]) -> None:
        """Remove delivered records (the relay settles them in batches)."""
        ...

    async def retry_later(self, record: OutboxRecord, attempts: int, at: float, error: str) -> None:
        """Keep ``record`` after its ``attempts``-th failure (``error``); due again at ``at``."""
        ...

    async def dead_letter(self, record: OutboxRecord, attempts: int, reason: str) -> None:
        """Move ``record`` to the dead letters with ``reason``: it failed for good."""
        ...

    async def pending(self) -> int:
        """How many records wait for delivery (due now or later)."""
        ...

    async def release(self, records: Sequence[OutboxRecord]) -> None:
        """Make records this relay took but will not deliver (it stops) due again now, for
        whichever instance of the module reads the outbox next."""
        ...

    @property
    def renew_interval(self) -> float | None:
        """How often the claims of records in flight must be renewed (None: no claims)."""
        ...

    async def renew(self, records: Sequence[OutboxRecord]) -> None:
        """Extend this relay's claims on records still in flight (a slow delivery)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed delivery is tried again."""

    max_attempts: int = 8
    base_delay: float = 0.2
    max_delay: float = 30.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: exponential, with equal jitter."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


#: Delivers one message to one named handler, wherever it runs; raises if it failed.
Deliver = Callable[[str, Envelope, Message], Awaitable[None]]

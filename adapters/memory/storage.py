"""Storage in memory, for modules without tables: an inbox in a bounded dict, and emitted
messages handed to the in-memory outbox when the unit commits."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from kernel.messages import Envelope, Message
from kernel.registry import Registry
from kernel.routing import PendingDelivery, fan_out
from kernel.unit_of_work import UnitOfWork


class MemoryStorage:
    """Storage of a module without tables: emitted messages go to an in-memory outbox.

    Deliveries survive a failed subscriber (the relay retries them) but not a crash; modules
    that need more declare tables and get the SQL storage instead.
    """

    def __init__(
        self,
        registry: Registry,
        enqueue: Callable[[list[PendingDelivery]], None],
        inbox_size: int = 100_000,
    ) -> None:
        self._registry = registry
        self._enqueue = enqueue
        self._inbox: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._inbox_size = inbox_size

    def unit_of_work(
        self, envelope: Envelope, rerun: bool = False, reads_only: bool = False
    ) -> UnitOfWork:
        # Memory takes no locks, so a rerun cannot lose a race to one: an ordinary unit.
        return _MemoryUnitOfWork(envelope, self)

    async def claim_tick(self, timer: str, every: float) -> bool:
        return True  # memory is never shared: this process is the only instance


class _MemoryUnitOfWork(UnitOfWork):
    __slots__ = ("_handled", "_storage")

    def __init__(self, envelope: Envelope, storage: MemoryStorage) -> None:
        # UnitOfWork.__init__ inlined: one unit per message, and the call cost a tenth of it.
        self.envelope = envelope
        self.emitted: list[Message] = []
        self.committed = None
        self._storage = storage
        self._handled: str | None = None

    async def handled(self, handler: str) -> bool:
        return (handler, self.envelope.message_id) in self._storage._inbox

    def mark_handled(self, handler: str) -> None:
        self._handled = handler

    async def commit(self) -> None:
        storage = self._storage
        if self._handled is not None:
            inbox = storage._inbox
            inbox[(self._handled, self.envelope.message_id)] = None
            if len(inbox) > storage._inbox_size:
                inbox.popitem(last=False)
        if self.emitted:
            storage._enqueue(fan_out(storage._registry, self.envelope, self.emitted))

    async def rollback(self) -> None:
        self.emitted.clear()

"""One unit of work per handled message: its state change and what it emits commit together.

The dispatcher opens a ``UnitOfWork`` from the handling module's ``Storage`` for each message,
makes it current for the duration of the handler, and commits it when the handler returns.
Messages the handler publishes or defers are recorded in the unit of work and written to the
module's outbox in the same transaction; the relay delivers them after the commit.

Module code never sees this class. It receives a ``Transaction`` (for its repositories) and the
``Bus`` (to publish), both resolved once at start-up, both acting on the current unit of work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from kernel.errors import ConcurrencyConflict, ConfigurationError
from kernel.ids import new_message_id
from kernel.messages import Envelope, Message, message_name, partition_of
from kernel.registry import Registry

_current: ContextVar[UnitOfWork | None] = ContextVar("cleave_unit_of_work", default=None)


#: The unit of work of the message being handled in this task, if any. The context
#: variable's own ``get``: the bus asks for it on every message, and a wrapper cost a frame.
current_unit_of_work: Callable[[], UnitOfWork | None] = _current.get


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One emitted message on its way to one module (``target``)."""

    target: str
    envelope: Envelope
    message: Message
    partition: str | None


def fan_out(
    registry: Registry, parent: Envelope | None, messages: list[Message]
) -> list[PendingDelivery]:
    """Turn emitted messages into one delivery per target module, with child envelopes."""
    deliveries: list[PendingDelivery] = []
    for message in messages:
        cls = type(message)
        name = message_name(cls)
        message_id = new_message_id()
        if parent is None:
            envelope = Envelope(message_id=message_id, name=name, version=cls.version)
        else:
            envelope = parent.child(message_id, name, cls.version)
        partition = partition_of(message)
        for target in registry.targets(cls):
            deliveries.append(PendingDelivery(target, envelope, message, partition))
    return deliveries


class UnitOfWork(ABC):
    """The transaction of one handled message, as the dispatcher drives it."""

    __slots__ = ("committed", "emitted", "envelope")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.emitted: list[Message] = []
        #: What to call once this unit has committed (``after_commit``); ``None`` if nothing.
        self.committed: list[Callable[[], None]] | None = None

    def emit(self, message: Message) -> None:
        """Record an event or deferred command; it is delivered only if this unit commits."""
        self.emitted.append(message)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this unit has committed; never if it rolls back."""
        if self.committed is None:
            self.committed = []
        self.committed.append(callback)

    async def connection(self) -> Any:
        """The transactional database connection of this unit (opened on first use)."""
        raise ConfigurationError("this module declares no tables, so it has no database")

    @abstractmethod
    async def handled(self, handler: str) -> bool:
        """Whether ``handler`` already handled this message (the inbox)."""

    @abstractmethod
    def mark_handled(self, handler: str) -> None:
        """Record in the inbox, with this unit's effects, that ``handler`` handled it."""

    @abstractmethod
    async def commit(self) -> None:
        """Make the state change, the inbox record and the outbox records durable together."""

    @abstractmethod
    async def rollback(self) -> None:
        """Discard everything this unit did."""

    async def exclusive(self) -> None:
        """Make this unit the only writer of its storage until it ends, where the storage
        can (SQLite's one writer); a unit that lost a concurrency race reruns this way."""
        return None

    def transient(self, error: BaseException) -> bool:
        """Whether ``error`` (raised by the handler) means a lost race worth running again."""
        return isinstance(error, ConcurrencyConflict)

    def enter(self) -> object:
        return _current.set(self)

    @staticmethod
    def leave(token: Any) -> None:
        _current.reset(token)


class Storage(Protocol):
    """Where one module keeps its state: opens a unit of work per handled message."""

    def unit_of_work(self, envelope: Envelope) -> UnitOfWork: ...

    async def claim_tick(self, timer: str, every: float) -> bool:
        """Whether this process fires ``timer`` now: true for one instance of the module
        per period of ``every`` seconds, however many instances share the storage."""
        ...


class Transaction:
    """What a module's repositories receive: the connection of the message being handled.

    Resolved once at start-up and shared; each call reads the current unit of work.
    """

    async def connection(self) -> Any:
        """The transactional connection (a SQLAlchemy ``AsyncConnection`` with the SQL adapter)."""
        unit = _current.get()
        if unit is None:
            raise RuntimeError("no message is being handled: repositories work inside handlers")
        return await unit.connection()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current unit of work has committed, never if it rolls
        back: to tell this process about a change only when others can read it."""
        unit = _current.get()
        if unit is None:
            raise RuntimeError("no message is being handled: nothing will commit")
        unit.after_commit(callback)


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

    def unit_of_work(self, envelope: Envelope) -> UnitOfWork:
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

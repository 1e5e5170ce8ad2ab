"""One unit of work per handled message: its state change and what it emits commit together.

The dispatcher opens a ``UnitOfWork`` from the module's ``Storage`` for each message, makes it
current while the handler runs, and commits it; what the handler publishes or defers goes to
the module's outbox in the same transaction. Module code never sees this class: it receives a
``Transaction`` (for its repositories) and the ``Bus``, both acting on the current unit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from kernel.errors import ConcurrencyConflict, ConfigurationError
from kernel.messages import Envelope, Message

_current: ContextVar[UnitOfWork | None] = ContextVar("cleave_unit_of_work", default=None)


#: The unit of work of the message being handled in this task, if any (the bare ``get``: the
#: bus asks on every message, and a wrapper cost a frame).
current_unit_of_work: Callable[[], UnitOfWork | None] = _current.get


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

    def transient(self, error: BaseException) -> bool:
        """Whether ``error`` (raised by the handler) means a lost race worth running again."""
        return isinstance(error, ConcurrencyConflict)

    def enter(self) -> object:
        """Make this the current unit of work of the task (``Transaction`` and the bus read it)."""
        return _current.set(self)

    @staticmethod
    def leave(token: Any) -> None:
        """Restore the unit of work that was current before ``enter`` returned ``token``."""
        _current.reset(token)


class Storage(Protocol):
    """Where one module keeps its state: opens a unit of work per handled message."""

    def unit_of_work(
        self, envelope: Envelope, rerun: bool = False, reads_only: bool = False
    ) -> UnitOfWork:
        """A fresh unit of work for the message of ``envelope``. A ``rerun`` follows a unit
        that lost a concurrency race: the storage makes sure, where it can, that this one
        cannot lose again (on SQLite, by writing alone). A ``reads_only`` unit is a query's:
        it refuses writes, and may run without a transaction where each statement sees what
        was committed before it anyway (PostgreSQL)."""
        ...

    async def claim_tick(self, timer: str, every: float) -> bool:
        """Whether this process fires ``timer`` now: true for one instance of the module
        per period of ``every`` seconds, however many instances share the storage."""
        ...


class Transaction:
    """What a module's repositories receive: the connection of the message being handled
    (one shared instance; each call reads the current unit of work)."""

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

"""The one interface modules and controllers use to talk to each other.

``send`` and ``ask`` get an answer (or a typed error) from the one handler of the message,
wherever it runs; ``publish`` and ``defer`` are delivered after the current unit of work
commits, at least once. The composition root, never the module, picks each module's transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from kernel.errors import ConfigurationError
from kernel.messages import (
    Command,
    Envelope,
    Event,
    Message,
    Principal,
    Query,
    message_name,
    new_envelope,
)
from kernel.registry import Registry
from kernel.routing import PendingOutbox, fan_out
from kernel.unit_of_work import current_unit_of_work

R = TypeVar("R")

#: Calls one endpoint with a message and its envelope and returns the result.
Call = Callable[[Message, Envelope], Awaitable[Any]]


@runtime_checkable
class Bus(Protocol):
    """What modules and API controllers see of the message bus."""

    async def send(
        self,
        command: Command[R],
        /,
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        """Ask the owning module to change something; returns its result or raises its error."""
        ...

    async def ask(
        self,
        query: Query[R],
        /,
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        """Ask the owning module for data."""
        ...

    async def publish(self, event: Event) -> None:
        """Tell every subscriber that something happened (after the current unit commits)."""
        ...

    async def defer(self, command: Command[Any]) -> None:
        """Send a command without waiting for it (after the current unit commits)."""
        ...


class Transport(Protocol):
    """Carries messages to the modules they are for, in this process or another."""

    def requester(self, module: str, message: type[Message]) -> Call:
        """A call that runs ``module``'s handler of ``message`` (a command or query) and
        returns its result or raises its typed error."""
        ...

    def deliverer(self, module: str) -> Call:
        """A call that delivers an event or deferred command to ``module``'s handlers,
        exactly once in effect (the receiving inbox drops repeats); it raises if the
        delivery failed, and the relay tries again."""
        ...


@dataclass(frozen=True, slots=True)
class _Requester:
    """How this process reaches the one handler of a command or query class."""

    name: str
    version: int
    call: Call


class MessageBus:
    """The ``Bus`` of one process: hands each message to its module's transport."""

    def __init__(self, registry: Registry, outbox: PendingOutbox) -> None:
        self.registry = registry
        #: Takes what is emitted outside any unit of work (an in-memory outbox).
        self._outbox = outbox
        self._requesters: dict[type[Message], _Requester] = {}
        self._deliverers: dict[str, Call] = {}

    def connect(self, transports: Mapping[str, Transport]) -> None:
        """Reach each module's handlers through its transport (module name -> transport); a
        module with none is unreachable from here. Not in ``__init__``: handlers receive the
        bus before the transports that call them exist."""
        for cls, module in self.registry.owners.items():
            transport = transports.get(module)
            if transport is not None and issubclass(cls, Command | Query):
                self._requesters[cls] = _Requester(
                    message_name(cls), cls.version, transport.requester(module, cls)
                )
        for module, transport in transports.items():
            self._deliverers[module] = transport.deliverer(module)

    def _requester(self, message: Message) -> _Requester:
        try:
            return self._requesters[type(message)]
        except KeyError:
            raise ConfigurationError(
                f"no module in this topology handles {type(message).__qualname__}"
            ) from None

    async def request(
        self,
        message: Command[R] | Query[R],
        /,
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        """Run the handler of a command or query, wherever it is, and return its result."""
        requester = self._requesters.get(type(message)) or self._requester(message)
        unit = current_unit_of_work()
        parent = None if unit is None else unit.envelope
        envelope = new_envelope(
            requester.name, requester.version, parent, principal, deadline, awaited=True
        )
        result: R = await requester.call(message, envelope)
        return result

    # One path for both: a command and a query travel alike; only their meaning differs.
    send = request
    ask = request

    async def publish(self, event: Event) -> None:
        """Emit ``event`` to its subscribers (see ``Bus.publish``)."""
        self._emit(event)

    async def defer(self, command: Command[Any]) -> None:
        """Emit ``command`` to its owner without waiting (see ``Bus.defer``)."""
        self._requester(command)  # refuse now a command nobody can handle
        self._emit(command)

    def _emit(self, message: Message) -> None:
        unit = current_unit_of_work()
        if unit is not None:
            unit.emit(message)
        else:
            self._outbox.add(fan_out(self.registry, None, [message]))

    async def deliver(self, target: str, envelope: Envelope, message: Message) -> None:
        """Deliver one outbox record to module ``target`` (used by relays)."""
        try:
            deliverer = self._deliverers[target]
        except KeyError:
            raise ConfigurationError(f"module {target!r} is not reachable from here") from None
        await deliverer(message, envelope)

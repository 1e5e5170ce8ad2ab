"""The one interface modules and controllers use to talk to each other.

``send`` a command and ``ask`` a query get an answer (or a typed error) from the one handler
of that message, wherever it runs. ``publish`` an event and ``defer`` a command are
asynchronous: inside a handler they are recorded in the unit of work and delivered after it
commits, at least once; outside any handler they go through an in-memory outbox.

Which transport carries a message to a module is decided by the composition root, never by
the module: the same code runs in one process or split over many.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from kernel.errors import ConfigurationError
from kernel.ids import new_message_id
from kernel.messages import Command, Envelope, Event, Message, Principal, Query, message_name
from kernel.registry import Registry
from kernel.relay import MemoryOutbox
from kernel.unit_of_work import current_unit_of_work, fan_out

R = TypeVar("R")

#: Calls one endpoint with a message and its envelope and returns the result.
Call = Callable[[Message, Envelope], Awaitable[Any]]


@runtime_checkable
class Bus(Protocol):
    """What modules and API controllers see of the message bus."""

    async def send(
        self,
        command: Command[R],
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        """Ask the owning module to change something; returns its result or raises its error."""
        ...

    async def ask(
        self,
        query: Query[R],
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
class _Route:
    name: str
    version: int
    call: Call


class MessageBus:
    """The ``Bus`` of one process: routes each message to its module's transport."""

    def __init__(self, registry: Registry, outbox: MemoryOutbox) -> None:
        self.registry = registry
        self._outbox = outbox
        self._routes: dict[type[Message], _Route] = {}
        self._deliverers: dict[str, Call] = {}

    def connect(self, transports: Mapping[str, Transport]) -> None:
        """Route each module's messages through its transport (module name -> transport).

        Separate from construction because handlers receive the bus as a collaborator
        before the transports that call those handlers exist. A module with no transport
        cannot be reached from this process.
        """
        for cls, module in self.registry.owners.items():
            transport = transports.get(module)
            if transport is not None and issubclass(cls, Command | Query):
                self._routes[cls] = _Route(
                    message_name(cls), cls.version, transport.requester(module, cls)
                )
        for module, transport in transports.items():
            self._deliverers[module] = transport.deliverer(module)

    def _envelope(
        self, route: _Route, principal: Principal | None, deadline: float | None
    ) -> Envelope:
        unit = current_unit_of_work()
        if unit is None:
            return Envelope(
                message_id=new_message_id(),
                name=route.name,
                version=route.version,
                principal=principal,
                deadline=deadline,
            )
        parent = unit.envelope
        return parent.child(
            new_message_id(),
            route.name,
            route.version,
            principal=principal,
            deadline=deadline or parent.deadline,
        )

    def _route(self, message: Message) -> _Route:
        try:
            return self._routes[type(message)]
        except KeyError:
            raise ConfigurationError(
                f"no module in this topology handles {type(message).__qualname__}"
            ) from None

    async def send(
        self,
        command: Command[R],
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        result: R = await self._request(command, principal, deadline)
        return result

    async def ask(
        self,
        query: Query[R],
        *,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> R:
        result: R = await self._request(query, principal, deadline)
        return result

    async def _request(
        self, message: Message, principal: Principal | None, deadline: float | None
    ) -> Any:
        route = self._routes.get(type(message)) or self._route(message)
        return await route.call(message, self._envelope(route, principal, deadline))

    async def publish(self, event: Event) -> None:
        self._emit(event)

    async def defer(self, command: Command[Any]) -> None:
        self._route(command)  # refuse now a command nobody can handle
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

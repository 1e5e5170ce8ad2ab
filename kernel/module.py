"""The declaration a bounded-context module gives to the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from kernel.messages import Command, Event, Message, Query

#: The name, in a module's contracts, of the tuple of events the module subscribes to.
SUBSCRIBES_TO = "SUBSCRIBES_TO"

#: A handler is a plain async function: the message first, injected collaborators after it.
Handler = Callable[..., Awaitable[Any]]
#: ``register(container)``: binds the module's collaborators in the punq container.
Wiring = Callable[[Any], None]


@dataclass(frozen=True)
class Timer:
    """Sends ``command`` every ``every`` seconds in the process hosting the module."""

    every: float
    command: Command[Any]


@dataclass(frozen=True)
class Module:
    """What a module is made of. Example::

        module = Module(
            name="catalog",
            contracts=contracts,
            handlers={AddProduct: add_product, GetProduct: get_product},
            subscriptions={},
            wiring=register,
            routes=[CatalogController],
            tables=metadata,
        )

    ``handlers`` maps the module's own commands and queries to their handlers;
    ``subscriptions`` maps events (of any module) to handlers of this one. The kernel only
    carries ``routes`` (web controllers) and ``tables`` (a ``MetaData``) to the adapters.
    """

    name: str
    contracts: ModuleType
    handlers: Mapping[type[Command[Any]] | type[Query[Any]], Handler] = field(default_factory=dict)
    subscriptions: Mapping[type[Event], Sequence[Handler]] = field(default_factory=dict)
    wiring: Wiring | None = None
    routes: Sequence[Any] = ()
    tables: Any = None
    timers: Sequence[Timer] = ()

    @property
    def package(self) -> str:
        """The Python package that holds the module (the parent of its contracts)."""
        return self.contracts.__name__.rpartition(".")[0]


def declared_messages(contracts: ModuleType) -> list[type[Message]]:
    """Every command, query and event class defined in a module's ``contracts``."""
    found: list[type[Message]] = []
    for value in vars(contracts).values():
        if (
            isinstance(value, type)
            and issubclass(value, (Command, Query, Event))
            and value.__module__ == contracts.__name__
            and isinstance(value.__struct_config__.tag, str)
        ):
            found.append(value)
    return found


def subscribed_events(contracts: ModuleType) -> tuple[type[Event], ...]:
    """The events a module's ``contracts`` say it subscribes to (its ``SUBSCRIBES_TO``).

    They are part of the module's public surface: a process that hosts the publisher of one
    of them, and not this module, still knows from the contracts alone to deliver it here.
    """
    events = getattr(contracts, SUBSCRIBES_TO, ())
    return tuple(events)


def handler_name(module: str, handler: Handler) -> str:
    """The stable name of a handler, used in inbox records and dead letters."""
    return f"{module}.{getattr(handler, '__name__', type(handler).__name__)}"

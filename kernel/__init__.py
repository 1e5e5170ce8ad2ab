"""Cleave's kernel: messages, the bus, modules, units of work and relays.

The kernel knows no module, no transport library and no web framework; adapters plug those
in, and the composition root (``entrypoints``) puts them together.

Reading order (one job per file; about an hour top to bottom):

1. ``messages``: Command, Query, Event, the Envelope and its one builder (``new_envelope``).
2. ``errors``: typed errors that keep their type across every transport.
3. ``module``: what a module declares: handlers, subscriptions, wiring, timers.
4. ``registry``: checks that the modules fit together; who owns and who subscribes.
5. ``routing``: emitted messages become one delivery per target module.
6. ``bus``: ``send``/``ask``/``publish``/``defer``, and the ``Transport`` port.
7. ``unit_of_work``: one transaction per handled message; the ``Storage`` port.
8. ``binding``: a handler's collaborators resolved once, at start-up.
9. ``dispatch``: runs a handler in its unit of work: inbox, deadline, lost races.
10. ``outbox`` then ``relay``: what waits for delivery, and the loop that delivers it.
11. ``codec`` then ``receiver``: the wire format, and the receiving side of every transport.
12. ``runtime``: a process's bus, relays and timers, started and stopped together.
13. ``clock``, ``ids``, ``observe``: time, identifiers, and the observer/tracer ports.

``kernel.testing`` is the contract-test kit for modules (the ``testing`` extra).
"""

from kernel.bus import Bus, MessageBus, Transport
from kernel.clock import Clock, SystemClock
from kernel.errors import (
    CleaveError,
    ConcurrencyConflict,
    ConfigurationError,
    Conflict,
    DomainError,
    Forbidden,
    InternalError,
    NotFound,
    PoisonMessage,
    Rejected,
    Unauthenticated,
    Unavailable,
)
from kernel.ids import new_entity_id, new_message_id
from kernel.messages import SYSTEM, Command, Envelope, Event, Message, Principal, Query
from kernel.module import Module, Timer
from kernel.registry import Registry
from kernel.repositories import conflict_on, expect_one_row
from kernel.unit_of_work import Transaction

__all__ = [
    "SYSTEM",
    "Bus",
    "CleaveError",
    "Clock",
    "Command",
    "ConcurrencyConflict",
    "ConfigurationError",
    "Conflict",
    "DomainError",
    "Envelope",
    "Event",
    "Forbidden",
    "InternalError",
    "Message",
    "MessageBus",
    "Module",
    "NotFound",
    "PoisonMessage",
    "Principal",
    "Query",
    "Registry",
    "Rejected",
    "SystemClock",
    "Timer",
    "Transaction",
    "Transport",
    "Unauthenticated",
    "Unavailable",
    "conflict_on",
    "expect_one_row",
    "new_entity_id",
    "new_message_id",
]

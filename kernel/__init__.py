"""Cleave's kernel: messages, the bus, modules, units of work and relays.

The kernel knows no module, no transport library and no web framework; adapters plug those
in, and the composition root (``entrypoints``) puts them together. ``docs/reading-the-code.md``
gives the order to read it in. ``kernel.testing`` is the contract-test kit for modules (the
``testing`` extra).
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
from kernel.repositories import conflict_on, expect_one_row, write_checked
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
    "write_checked",
]

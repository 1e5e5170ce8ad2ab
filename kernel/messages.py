"""The three kinds of message modules exchange, and the envelope that carries them.

Every message is a frozen, keyword-only ``msgspec.Struct`` with a stable tag
(``"inventory.Restock"``) so that it can cross any transport unchanged::

    class Restock(Command[StockLevel], frozen=True, kw_only=True, tag="inventory.Restock"):
        sku: Sku
        quantity: Quantity

A contract evolves by adding fields with defaults. Renaming or removing a field is a
breaking change: it needs a new ``version`` (the receiver refuses other versions, so an old
message goes to the dead letters instead of being misread).
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from kernel.ids import new_message_id

R = TypeVar("R")


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of commands, queries and events."""

    #: Schema version of the contract. Bump it only for a breaking change.
    version: ClassVar[int] = 1
    #: The field whose value orders deliveries (``"order_id"``): messages with the same value
    #: reach a subscriber in the order they were emitted.
    partition_key: ClassVar[str | None] = None
    #: Tried until handled or refused for good, never dead-lettered for a transient failure:
    #: for compensations, which must not give up while they leave something undone.
    retry_forever: ClassVar[bool] = False


class Command(Message, Generic[R], frozen=True, kw_only=True):
    """Asks one module to change something. Exactly one handler; returns ``R``."""


class Query(Message, Generic[R], frozen=True, kw_only=True):
    """Asks one module for data. Exactly one handler; no side effects; returns ``R``."""


class Event(Message, frozen=True, kw_only=True):
    """Says something happened. Zero or more subscribers, delivered at least once."""


MessageKind = Literal["command", "query", "event"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked: a user (from a JWT), another service, or the system itself."""

    subject: str
    roles: tuple[str, ...] = ()
    kind: Literal["user", "service", "system"] = "user"

    def has_role(self, role: str) -> bool:
        """True when the principal holds ``role``."""
        return role in self.roles

    @property
    def administers(self) -> bool:
        """True for an admin and for the system itself: who may change what the shop offers
        and read anyone's records."""
        return self.kind == "system" or "admin" in self.roles


#: The principal of work the system does on its own behalf (timers, relays, start-up).
SYSTEM = Principal(subject="system", roles=("system",), kind="system")


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What travels with every message: identity, causality, caller, trace and deadline."""

    message_id: str
    name: str
    version: int = 1
    correlation_id: str | None = None
    causation_id: str | None = None
    principal: Principal | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    #: Unix time in seconds after which the caller no longer waits for an answer.
    deadline: float | None = None
    attempt: int = 1


def new_envelope(
    name: str,
    version: int,
    parent: Envelope | None = None,
    principal: Principal | None = None,
    deadline: float | None = None,
    awaited: bool = False,
) -> Envelope:
    """The envelope of a new message named ``name``: the one place envelopes are made.

    Sent or emitted while handling ``parent``, it keeps the parent's correlation, trace and
    caller (unless ``principal`` replaces it). An ``awaited`` call (``send``, ``ask``) passes
    its own ``deadline``, or else the parent's, since that caller is still waiting; a message
    emitted through the outbox is delivered later and gets none.
    """
    if parent is None:
        return Envelope(
            message_id=new_message_id(),
            name=name,
            version=version,
            principal=principal,
            deadline=deadline,
        )
    return Envelope(
        message_id=new_message_id(),
        name=name,
        version=version,
        correlation_id=parent.correlation_id or parent.message_id,
        causation_id=parent.message_id,
        principal=principal or parent.principal,
        traceparent=parent.traceparent,
        tracestate=parent.tracestate,
        deadline=deadline or (parent.deadline if awaited else None),
    )


def message_name(cls: type[Message]) -> str:
    """The stable wire name of a message class (its msgspec tag)."""
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__qualname__} needs a string tag, like tag='module.{cls.__name__}'")
    return tag


def message_kind(cls: type[Message]) -> MessageKind:
    """Whether ``cls`` is a command, a query or an event."""
    if issubclass(cls, Command):
        return "command"
    if issubclass(cls, Query):
        return "query"
    if issubclass(cls, Event):
        return "event"
    raise TypeError(f"{cls.__qualname__} is neither a Command, a Query nor an Event")


def result_type(cls: type[Message]) -> Any:
    """The declared result type ``R`` of a ``Command[R]`` or ``Query[R]`` (None for events)."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if origin in (Command, Query):
                (arg,) = typing.get_args(base)
                return None if arg is type(None) else arg
    return None


def partition_of(message: Message) -> str | None:
    """The value that orders deliveries of ``message``, if its class declares one."""
    field = type(message).partition_key
    if field is None:
        return None
    return str(getattr(message, field))

"""Routing: turns emitted messages into one delivery per module they are for.

The registry says who owns a command and who subscribes to an event; routing applies that to
what a unit of work (or code outside any handler) emitted, giving each delivery the envelope
it travels in. The outboxes store these deliveries and the relays carry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kernel.messages import Envelope, Message, message_name, new_envelope, partition_of
from kernel.registry import Registry


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One emitted message on its way to one module (``target``)."""

    target: str
    envelope: Envelope
    message: Message
    partition: str | None


class PendingOutbox(Protocol):
    """An outbox that takes deliveries directly (in memory), for messages emitted outside
    any unit of work."""

    def add(self, deliveries: Sequence[PendingDelivery]) -> None:
        """Keep ``deliveries`` until a relay delivers them."""
        ...


def fan_out(
    registry: Registry, parent: Envelope | None, messages: Sequence[Message]
) -> list[PendingDelivery]:
    """One delivery per target module of each message, in child envelopes of ``parent``."""
    deliveries: list[PendingDelivery] = []
    for message in messages:
        cls = type(message)
        envelope = new_envelope(message_name(cls), cls.version, parent)
        partition = partition_of(message)
        for target in registry.targets(cls):
            deliveries.append(PendingDelivery(target, envelope, message, partition))
    return deliveries

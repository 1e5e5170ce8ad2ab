"""A module for tests that records every payments event it receives, in delivery order.

Payments' outcome events reach it through payments' outbox and the relay, exactly as they
reach the ordering saga, so a test sees what a subscriber would see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernel import Module
from modules.payments.contracts import (
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)
from tests.contracts.payments.observer import contracts

Outcome = PaymentCaptured | PaymentDeclined | PaymentFailed


@dataclass
class Seen:
    """What the observer received."""

    events: list[Any] = field(default_factory=list)

    def of(self, order_id: str) -> list[Any]:
        return [event for event in self.events if event.order_id == order_id]

    def outcomes(self, order_id: str) -> list[Outcome]:
        return [event for event in self.of(order_id) if not isinstance(event, PaymentVoided)]

    def voids(self, order_id: str) -> list[PaymentVoided]:
        return [event for event in self.of(order_id) if isinstance(event, PaymentVoided)]


async def on_payment_captured(event: PaymentCaptured, seen: Seen) -> None:
    seen.events.append(event)


async def on_payment_declined(event: PaymentDeclined, seen: Seen) -> None:
    seen.events.append(event)


async def on_payment_failed(event: PaymentFailed, seen: Seen) -> None:
    seen.events.append(event)


async def on_payment_voided(event: PaymentVoided, seen: Seen) -> None:
    seen.events.append(event)


def observer(seen: Seen) -> Module:
    """The observer module, recording into ``seen``."""

    def register(container: Any) -> None:
        container.register(Seen, instance=seen)

    return Module(
        name="observer",
        contracts=contracts,
        subscriptions={
            PaymentCaptured: [on_payment_captured],
            PaymentDeclined: [on_payment_declined],
            PaymentFailed: [on_payment_failed],
            PaymentVoided: [on_payment_voided],
        },
        wiring=register,
    )

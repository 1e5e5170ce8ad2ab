"""A module for tests that records every ``UserRegistered`` it receives.

The events reach it through identity's outbox and the relay, as they would reach any
subscriber (a welcome notification), so a test sees what a subscriber would see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernel import Module
from modules.identity.contracts import UserRegistered
from tests.contracts.identity.observer import contracts


@dataclass
class Seen:
    """What the observer received, in delivery order."""

    registrations: list[UserRegistered] = field(default_factory=list)


async def on_user_registered(event: UserRegistered, seen: Seen) -> None:
    seen.registrations.append(event)


def observer(seen: Seen) -> Module:
    """The observer module, recording into ``seen``."""

    def register(container: Any) -> None:
        container.register(Seen, instance=seen)

    return Module(
        name="identity_observer",
        contracts=contracts,
        subscriptions={UserRegistered: [on_user_registered]},
        wiring=register,
    )

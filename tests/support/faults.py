"""Fault injection into the in-process transport, for the reliability tests.

``FaultyTransport`` wraps a real transport and counts every delivery attempt. Synchronous
requests pass through; each asynchronous delivery (what relays carry: events and deferred
commands) may, as the plan decides, fail before the handler runs, or fail *after* the
handler committed, which is exactly what a crash between a handler's commit and the
relay's acknowledgement looks like.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kernel.bus import Call, Transport
from kernel.messages import Envelope, Message


class InjectedFault(RuntimeError):
    """A failure the test asked for."""


@dataclass
class FaultPlan:
    """How often deliveries fail, and where. Seeded, so hypothesis can shrink a failure."""

    seed: int
    before: float = 0.0
    after: float = 0.0
    enabled: bool = True
    injected: dict[str, int] = field(default_factory=lambda: {"before": 0, "after": 0})
    #: Every delivery attempt, by ("module <- message name", message id): more than one
    #: means a redelivery.
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def draw(self) -> str | None:
        if not self.enabled:
            return None
        roll = self._random.random()
        if roll < self.before:
            return "before"
        if roll < self.before + self.after:
            return "after"
        return None


class FaultyTransport:
    """A transport whose deliveries fail as the plan says."""

    def __init__(self, inner: Transport, plan: FaultPlan) -> None:
        self._inner = inner
        self._plan = plan

    def requester(self, module: str, message: type[Message]) -> Call:
        return self._inner.requester(module, message)

    def deliverer(self, module: str) -> Call:
        deliver = self._inner.deliverer(module)
        plan = self._plan

        async def faulty(message: Message, envelope: Envelope) -> Any:
            target = f"{module} <- {envelope.name}"
            plan.attempts[(target, envelope.message_id)] += 1
            fault = plan.draw()
            if fault == "before":
                plan.injected["before"] += 1
                raise InjectedFault(f"{target}: injected before handling")
            result = await deliver(message, envelope)
            if fault == "after":
                plan.injected["after"] += 1
                raise InjectedFault(f"{target}: injected after the handler committed")
            return result

        return faulty

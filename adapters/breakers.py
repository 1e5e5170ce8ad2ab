"""Circuit breakers for calls to anything remote, on purgatory.

One breaker per named target (the payment provider, each instance of a remote service):
after ``threshold`` failed calls in a row the circuit opens and calls fail fast, without a
request, for ``cooldown`` seconds; then exactly one trial call goes through (purgatory's
half-open state lets every caller through, so the gate here keeps it to one) and closes the
circuit if it succeeds. A call its caller cancelled says nothing about the target's health.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from adapters.optional_imports import hidden

# purgatory imports redis only to annotate a Redis store we do not use, and redis brings
# OpenTelemetry's metrics SDK and psutil: about 9 MiB of every process with no other use for
# them (bench/memory_breakdown.py).
with hidden("redis"):
    from purgatory import AsyncCircuitBreakerFactory
    from purgatory.domain.model import OpenedState


class CircuitOpen(Exception):
    """The target's circuit is open (or its one trial call is under way): fail fast."""

    def __init__(self, target: str, trial: bool) -> None:
        self.target = target
        self.trial = trial
        super().__init__(
            f"{target}: circuit open, a trial call is under way"
            if trial
            else f"{target}: circuit open after repeated failures"
        )


#: Every ``Breakers`` of this process, for ``/metrics`` (the clients that own them come and go
#: with their runtime; a weak set forgets them with it).
_ALL: weakref.WeakSet[Breakers] = weakref.WeakSet()


def circuit_states() -> dict[str, str]:
    """The state of every circuit this process has called through, by target."""
    return {target: state for breakers in list(_ALL) for target, state in breakers.states().items()}


class Breakers:
    """Circuit breakers by target name."""

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("a breaker threshold must be at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=cooldown,
            exclude=[asyncio.CancelledError],
        )
        if on_change is not None:
            self._factory.add_listener(
                lambda name, kind, event: (
                    on_change(name, event.state) if kind == "state_changed" else None
                )
            )
        self._breakers: dict[str, Any] = {}
        self._trials: set[str] = set()
        _ALL.add(self)

    def state(self, target: str) -> str:
        """``closed``, ``opened`` or ``half-opened``. An open circuit whose cooldown has
        passed says ``opened`` until a call tries it."""
        breaker = self._breakers.get(target)
        return "closed" if breaker is None else str(breaker.context.state)

    def states(self) -> dict[str, str]:
        """The state of each target called so far (see ``state``)."""
        return {target: self.state(target) for target in list(self._breakers)}

    def callable(self, target: str) -> bool:
        """Whether a call to ``target`` may go out now: closed, or open past the cooldown
        with no trial under way."""
        breaker = self._breakers.get(target)
        if breaker is None or breaker.context.state == "closed":
            return True
        if target in self._trials:
            return False
        opened_at = breaker.context.opened_at
        return opened_at is None or time.time() >= opened_at + self.cooldown

    @asynccontextmanager
    async def guard(self, target: str) -> AsyncIterator[None]:
        """Run the body as one call to ``target``; an exception out of it is a failure.

        Raises ``CircuitOpen`` without running the body when the circuit is open.
        """
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = await self._factory.get_breaker(target)
        trial = breaker.context.state != "closed"
        if trial and target in self._trials:
            raise CircuitOpen(target, trial=True)
        if trial:
            self._trials.add(target)
        try:
            async with breaker:
                yield
        except OpenedState:
            raise CircuitOpen(target, trial=False) from None
        finally:
            if trial:
                self._trials.discard(target)

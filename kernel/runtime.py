"""The running side of one process: its bus, its relays and its timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.bus import MessageBus
from kernel.clock import Clock
from kernel.messages import SYSTEM
from kernel.module import Timer
from kernel.relay import Relay

log = logging.getLogger("cleave.runtime")


@dataclass
class Runtime:
    """What ``bootstrap`` returns: the wired bus and the background work of the process."""

    bus: MessageBus
    relays: Sequence[Relay]
    timers: Sequence[Timer]
    clock: Clock
    #: The composition's container, for entrypoints that need a collaborator (CLI, tests).
    container: Any = None
    _timer_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False

    async def start(self) -> None:
        """Start the relays (delivering what a previous run left in the outboxes) and timers."""
        for relay in self.relays:
            relay.start()
        self._timer_tasks = [
            asyncio.create_task(self._tick(timer), name=f"timer:{type(timer.command).__name__}")
            for timer in self.timers
        ]
        self.started = True

    async def stop(self, grace: float = 10.0) -> None:
        """Stop timers, then let relays finish deliveries in flight for up to ``grace`` seconds."""
        for task in self._timer_tasks:
            task.cancel()
        for task in self._timer_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._timer_tasks = []
        await asyncio.gather(*(relay.stop(grace) for relay in self.relays))
        self.started = False

    async def settle(self, within: float = 30.0, interval: float = 0.005) -> bool:
        """Wait until every outbox is empty and nothing is in flight; False after ``within`` s.

        Tests and the demo use it to observe the state once every reaction has happened.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        quiet = 0
        while loop.time() < end:
            idle = True
            for relay in self.relays:
                if not await relay.idle():
                    relay.notify()
                    idle = False
            # Two idle looks in a row: a delivery may commit new records between two relays.
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                return True
            await asyncio.sleep(interval)
        return False

    async def _tick(self, timer: Timer) -> None:
        while True:
            await asyncio.sleep(timer.every)
            try:
                await self.bus.send(timer.command, principal=SYSTEM)
            except Exception:
                log.exception("timer %s failed; it runs again in %ss", timer.command, timer.every)

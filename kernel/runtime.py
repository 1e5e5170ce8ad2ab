"""The running side of one process: its bus, its relays and its timers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.bus import MessageBus
from kernel.clock import Clock
from kernel.messages import SYSTEM, message_name
from kernel.module import Timer
from kernel.receiver import Receiver
from kernel.relay import Relay

log = logging.getLogger("cleave.runtime")

#: Asks the module's storage whether this process fires a timer now: ``(name, every)`` in,
#: True for exactly one of the instances of the module in each period.
ClaimTick = Callable[[str, float], Awaitable[bool]]


@dataclass(frozen=True)
class ScheduledTimer:
    """A timer of a module hosted here, and how its instances agree on who fires it."""

    module: str
    timer: Timer
    claim: ClaimTick

    @property
    def name(self) -> str:
        """The timer's name: the wire name of the command it sends."""
        return message_name(type(self.timer.command))


@dataclass
class Runtime:
    """What ``bootstrap`` returns: the wired bus and the background work of the process."""

    bus: MessageBus
    relays: Sequence[Relay]
    timers: Sequence[ScheduledTimer]
    clock: Clock
    #: The composition's container, for entrypoints that need a collaborator (CLI, tests).
    container: Any = None
    #: The receiving side of this process, for transports that bring messages in.
    receiver: Receiver | None = None
    #: Closed, in order, after the relays stopped (clients of remote transports).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _timer_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False
    _stopping: bool = False

    async def start(self) -> None:
        """Start the relays (delivering what a previous run left in the outboxes) and timers."""
        self._stopping = False
        for relay in self.relays:
            relay.start()
        self._timer_tasks = [
            asyncio.create_task(self._tick(timer), name=f"timer:{timer.name}")
            for timer in self.timers
        ]
        self.started = True

    async def stop(self, grace: float = 10.0) -> None:
        """Stop timers, then let relays finish deliveries in flight for up to ``grace`` seconds."""
        self._stopping = True
        for task in self._timer_tasks:
            task.cancel()
        if self._timer_tasks:
            # A timer told to stop in the middle of a write finishes it first; never wait
            # for one forever.
            _, late = await asyncio.wait(self._timer_tasks, timeout=grace)
            for task in late:
                log.warning("timer %s did not stop within %ss", task.get_name(), grace)
        self._timer_tasks = []
        await asyncio.gather(*(relay.stop(grace) for relay in self.relays))
        for close in self.closers:
            try:
                await close()
            except Exception:
                log.exception("could not close %r", close)
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

    async def _tick(self, scheduled: ScheduledTimer) -> None:
        timer = scheduled.timer
        while not self._stopping:
            await asyncio.sleep(timer.every)
            try:
                # With several instances of the module, one of them fires in each period.
                if await scheduled.claim(scheduled.name, timer.every):
                    await self.bus.send(timer.command, principal=SYSTEM)
            except Exception:
                log.exception("timer %s failed; it runs again in %ss", scheduled.name, timer.every)

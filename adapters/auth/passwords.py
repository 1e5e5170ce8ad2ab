"""Argon2id password hashing for the identity module's ``PasswordHasher`` port.

Hashing is deliberately slow CPU and memory work (about 0.2 s at the default cost on a
two-core machine), so it runs in a worker thread: argon2-cffi releases the GIL while it
hashes, and the event loop keeps serving other requests meanwhile.

A login flood must not take the whole process with it: one hash at the default cost already
keeps ``parallelism`` (4) threads busy, so only as many hashes run at once as the machine's
cores can carry, a few more wait briefly for their turn, and the rest are refused at once
with ``PasswordHashingBusy`` (an ``Unavailable``: 503 with ``Retry-After`` at the edge,
whatever transport carried the login).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Literal, TypeVar

import argon2
from argon2.exceptions import VerificationError

from kernel.errors import Unavailable

T = TypeVar("T")

#: The cost profiles: argon2-cffi's defaults (RFC 9106, low memory) for production, and the
#: cheapest parameters argon2 accepts for tests and demos (never for real passwords).
Cost = Literal["default", "low"]

_PARAMETERS: dict[Cost, argon2.Parameters] = {
    "default": argon2.profiles.get_default_parameters(),
    "low": argon2.profiles.CHEAPEST,
}

#: How long a hash may wait for its turn before the caller is told to come back later.
QUEUE_WAIT_SECONDS = 1.0
#: Hashes that may wait for a turn, per hash that may run: about what the running ones get
#: through within ``QUEUE_WAIT_SECONDS`` (a default-cost hash takes about 0.2 s; a low-cost
#: one well under a millisecond, so its queue is no defence worth refusing logins for).
QUEUE_PER_SLOT: dict[Cost, int] = {"default": 4, "low": 64}


class PasswordHashingBusy(Unavailable):
    """Every password check this process can afford is under way: retry in a moment."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Argon2PasswordHasher:
    """Salted argon2id hashes, computed off the event loop, a bounded number at a time."""

    def __init__(
        self,
        cost: Cost = "default",
        *,
        concurrency: int | None = None,
        queue: int | None = None,
        queue_wait: float = QUEUE_WAIT_SECONDS,
    ) -> None:
        if cost not in _PARAMETERS:
            raise ValueError(f"unknown password hash cost {cost!r}: use 'default' or 'low'")
        self.cost = cost
        parameters = _PARAMETERS[cost]
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        # A hash runs `parallelism` threads: more hashes than cores / lanes at once only
        # share the same cores more thinly (and starve the event loop of its own).
        self.concurrency = concurrency or max(1, usable_cores() // parameters.parallelism)
        self.queue = self.concurrency * QUEUE_PER_SLOT[cost] if queue is None else queue
        self.queue_wait = queue_wait
        self._slots = asyncio.Semaphore(self.concurrency)
        self._waiting = 0

    async def hash(self, password: str) -> str:
        """A new salted hash of ``password`` (two calls give two different hashes)."""
        return await self._in_turn(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; False for a mismatch or a malformed hash."""
        return await self._in_turn(self._verify, hashed, password)

    async def _in_turn(self, work: Callable[..., T], *arguments: str) -> T:
        await self._take_turn()
        running = asyncio.get_running_loop().run_in_executor(None, work, *arguments)
        # The slot is free when the thread is done, not when its caller stops waiting
        # (a client that hangs up does not stop argon2 mid-hash).
        running.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(running)

    async def _take_turn(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self._waiting >= self.queue:
            raise _busy()
        self._waiting += 1
        try:
            async with asyncio.timeout(self.queue_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise _busy() from None
        finally:
            self._waiting -= 1

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, ValueError):
            # A mismatch is a VerifyMismatchError (a VerificationError), and so is a hash that
            # parses but is corrupt; a hash that does not parse raises InvalidHashError, and
            # one with non-ASCII characters UnicodeEncodeError: both are ValueErrors.
            return False


def _busy() -> PasswordHashingBusy:
    return PasswordHashingBusy(
        "too many password checks at once: try again in a moment", code="password_hashing_busy"
    )

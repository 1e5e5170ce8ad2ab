"""The SQLite writer gate honours a cancellation that arrives as the gate is granted.

Python 3.11's ``asyncio.wait_for`` swallows such a cancellation: the task told to stop runs
on, holding the gate. A runtime stopping its timers then waited forever for one of them
(seen in a CI run). Each round here grants the gate to a waiter and cancels it at once.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.sqlalchemy.database import WriterGate

pytestmark = pytest.mark.anyio


async def writer(gate: WriterGate, ran_on: asyncio.Event) -> None:
    await gate.acquire()
    try:
        ran_on.set()
        await asyncio.sleep(3600)
    finally:
        gate.release()


async def test_a_cancelled_waiter_stops_and_leaves_the_gate_free() -> None:
    for _ in range(200):
        gate = WriterGate(timeout=30)
        await gate.acquire()
        ran_on = asyncio.Event()
        task = asyncio.create_task(writer(gate, ran_on))
        await asyncio.sleep(0)
        gate.release()  # granted to the waiter...
        task.cancel()  # ... as it is told to stop
        try:
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(2):
                    await task
        finally:
            task.cancel()  # one that ran on is stopped for good
        assert not ran_on.is_set(), "the cancellation was swallowed"
        async with asyncio.timeout(1):  # and nobody holds the gate now
            await gate.acquire()
        gate.release()

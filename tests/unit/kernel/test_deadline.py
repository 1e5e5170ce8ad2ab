"""The dispatcher reads the process's one ``Clock`` for the caller's deadline: past it, the
handler does not run and the caller learns why (``Unavailable``, code ``deadline``)."""

from __future__ import annotations

import sys

import punq
import pytest

from adapters.memory import MemoryStorage
from kernel import Command, Unavailable
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, message_name
from kernel.module import Module
from kernel.registry import Registry


class Tick(Command[str], frozen=True, kw_only=True, tag="clocked.Tick"):
    pass


async def tick(command: Tick) -> str:
    return "ran"


class FixedClock:
    """A clock that says what the test tells it: the wall clock would make this a race."""

    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


def _dispatcher(clock: FixedClock) -> Dispatcher:
    module = Module(name="clocked", contracts=sys.modules[__name__], handlers={Tick: tick})
    registry = Registry([module], {})
    storage = MemoryStorage(registry, lambda deliveries: None)
    return Dispatcher(registry, {"clocked": storage}, punq.Container().resolve, clock)


def _envelope(deadline: float) -> Envelope:
    return Envelope(message_id="t-1", name=message_name(Tick), version=1, deadline=deadline)


@pytest.mark.anyio
async def test_a_message_before_its_deadline_by_the_clock_runs() -> None:
    # The wall clock is long past 1,000 s: only the injected clock can make this run.
    assert await _dispatcher(FixedClock(999.0)).request(Tick(), _envelope(1000.0)) == "ran"


@pytest.mark.anyio
async def test_a_message_past_its_deadline_by_the_clock_is_refused() -> None:
    # The wall clock is long before 10**12 s: only the injected clock can refuse this one.
    with pytest.raises(Unavailable) as refused:
        await _dispatcher(FixedClock(10.0**12 + 1)).request(Tick(), _envelope(10.0**12))
    assert refused.value.code == "deadline"

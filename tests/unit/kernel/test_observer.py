"""The dispatcher tells its observer about every message it handles: which handler, which
message, how long it took, how it ended, and whether it came in over the wire."""

from __future__ import annotations

import sys

import punq
import pytest

from adapters.memory import MemoryStorage
from kernel import Command, Event, Rejected, Transaction
from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, message_name
from kernel.module import Module
from kernel.observe import Arrival, Outcome
from kernel.receiver import Receiver
from kernel.registry import Endpoint, Registry

pytestmark = pytest.mark.anyio


class Jot(Command[str], frozen=True, kw_only=True, tag="probe.Jot"):
    refuse: bool = False
    crash: bool = False


class Jotted(Event, frozen=True, kw_only=True, tag="probe.Jotted"):
    pass


#: The probe module hears its own event (a module's contracts list what it subscribes to).
SUBSCRIBES_TO = (Jotted,)


async def jot(command: Jot) -> str:
    if command.refuse:
        raise Rejected("asked to refuse")
    if command.crash:
        raise RuntimeError("asked to crash")
    return "jotted"


async def on_jotted(event: Jotted) -> None:
    return None


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Outcome, Arrival]] = []

    def handled(
        self,
        endpoint: Endpoint,
        envelope: Envelope,
        seconds: float,
        outcome: Outcome,
        arrival: Arrival,
    ) -> None:
        assert seconds >= 0
        self.seen.append((endpoint.name, envelope.name, outcome, arrival))


def _dispatcher(recorder: Recorder) -> Dispatcher:
    module = Module(
        name="probe",
        contracts=sys.modules[__name__],
        handlers={Jot: jot},
        subscriptions={Jotted: [on_jotted]},
    )
    registry = Registry([module], {})
    container = punq.Container()
    container.register(Transaction, instance=Transaction())
    storage = MemoryStorage(registry, lambda deliveries: None)
    dispatcher = Dispatcher(registry, {"probe": storage}, container.resolve)
    dispatcher.observer = recorder
    return dispatcher


def _envelope(message: type[Jot] | type[Jotted], message_id: str = "m-1") -> Envelope:
    return Envelope(message_id=message_id, name=message_name(message))


async def test_each_outcome_reaches_the_observer() -> None:
    recorder = Recorder()
    dispatcher = _dispatcher(recorder)
    assert await dispatcher.request(Jot(), _envelope(Jot)) == "jotted"
    with pytest.raises(Rejected):
        await dispatcher.request(Jot(refuse=True), _envelope(Jot))
    with pytest.raises(RuntimeError):
        await dispatcher.request(Jot(crash=True), _envelope(Jot))
    await dispatcher.deliver("probe", Jotted(), _envelope(Jotted, "e-1"))
    await dispatcher.deliver("probe", Jotted(), _envelope(Jotted, "e-1"))
    assert [outcome for _, _, outcome, _ in recorder.seen] == [
        "handled",
        "refused",
        "failed",
        "handled",
        "repeat",
    ]
    assert recorder.seen[0][:2] == ("probe.jot", "probe.Jot")
    assert {arrival for *_, arrival in recorder.seen} == {"inprocess"}


async def test_a_message_from_the_wire_says_so() -> None:
    recorder = Recorder()
    dispatcher = _dispatcher(recorder)
    codec = Codec([Jot, Jotted], "json")
    receiver = Receiver(dispatcher, codec)
    await receiver.request(codec.encode(_envelope(Jot), Jot()))
    await receiver.deliver("probe", codec.encode(_envelope(Jotted, "e-2"), Jotted()))
    assert [(outcome, arrival) for *_, outcome, arrival in recorder.seen] == [
        ("handled", "wire"),
        ("handled", "wire"),
    ]

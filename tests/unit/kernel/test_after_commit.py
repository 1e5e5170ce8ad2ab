"""``Transaction.after_commit``: a handler says what to do once its unit of work has committed
(ordering wakes the clients waiting for an order with it), and it happens only then."""

from __future__ import annotations

import sys

import punq
import pytest

from adapters.memory import MemoryStorage
from kernel import Command, Event, Rejected, Transaction
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, message_name
from kernel.module import Module
from kernel.registry import Registry
from kernel.routing import PendingDelivery
from kernel.unit_of_work import current_unit_of_work


class Note(Command[None], frozen=True, kw_only=True, tag="probe.Note"):
    fail: bool = False


class Noted(Event, frozen=True, kw_only=True, tag="probe.Noted"):
    pass


class Journal:
    """What happened, in order: what the storage committed and what the callbacks saw."""

    def __init__(self) -> None:
        self.entries: list[str] = []


async def note(command: Note, transaction: Transaction, journal: Journal, bus: _Bus) -> None:
    transaction.after_commit(lambda: journal.entries.append("called back"))
    await bus.publish(Noted())
    if command.fail:
        raise Rejected("asked to fail")


class _Bus:
    """Only what ``note`` needs of the bus: publishing into the current unit of work."""

    async def publish(self, event: Event) -> None:
        unit = current_unit_of_work()
        assert unit is not None
        unit.emit(event)


def _dispatcher(journal: Journal) -> Dispatcher:
    module = Module(name="probe", contracts=sys.modules[__name__], handlers={Note: note})
    registry = Registry([module], {})
    container = punq.Container()
    container.register(Transaction, instance=Transaction())
    container.register(Journal, instance=journal)
    container.register(_Bus, instance=_Bus())

    def committed(deliveries: list[PendingDelivery]) -> None:
        journal.entries.append("committed")

    storage = MemoryStorage(registry, committed)
    return Dispatcher(registry, {"probe": storage}, container.resolve)


def _envelope() -> Envelope:
    return Envelope(message_id="m-1", name=message_name(Note), version=Note.version)


@pytest.mark.anyio
async def test_a_callback_runs_once_the_unit_has_committed() -> None:
    journal = Journal()
    await _dispatcher(journal).request(Note(), _envelope())
    assert journal.entries == ["committed", "called back"]


@pytest.mark.anyio
async def test_a_callback_never_runs_when_the_unit_rolls_back() -> None:
    journal = Journal()
    with pytest.raises(Rejected):
        await _dispatcher(journal).request(Note(fail=True), _envelope())
    assert journal.entries == []

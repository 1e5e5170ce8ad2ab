"""Two units of work that read the same inventory record and both write it: the second loses
the race (``ConcurrencyConflict``, which the dispatcher answers by running it again) instead
of overwriting the first or failing for good. Real databases; the two units are interleaved
by hand, so the race happens every time. The conflict comes with the write (SQLite) or, on
PostgreSQL, where the write is held to go with the unit's outbox records, at the commit
(``kernel.write_checked``): either way before anything is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import pytest
from sqlalchemy import text

from kernel import SYSTEM, ConcurrencyConflict, Transaction
from kernel.messages import message_name, new_envelope
from kernel.runtime import Runtime
from kernel.unit_of_work import UnitOfWork
from modules.catalog.contracts import AddProduct
from modules.catalog.module import module as catalog
from modules.inventory.contracts import GetStock, Restock, StockReserved
from modules.inventory.domain import Reservation, ReservationStatus, Stock
from modules.inventory.module import module as inventory
from modules.inventory.repository import Reservations, StockRecords
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop

pytestmark = pytest.mark.anyio

T = TypeVar("T")


async def within(unit: UnitOfWork, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` as a handler runs: with ``unit`` current."""
    token = unit.enter()
    try:
        return await work()
    finally:
        unit.leave(token)


@asynccontextmanager
async def two_units(runtime: Runtime) -> AsyncIterator[tuple[UnitOfWork, UnitOfWork]]:
    """Two units of work of inventory's storage, both rolled back at the end if still open (an
    open one would keep PostgreSQL from dropping the test's schema)."""
    assert runtime.receiver is not None
    storage = runtime.receiver.dispatcher.handler_of(Restock).storage
    envelope = new_envelope(message_name(Restock), Restock.version)
    units = (storage.unit_of_work(envelope), storage.unit_of_work(envelope))
    try:
        yield units
    finally:
        for unit in units:
            await unit.rollback()


async def test_a_write_over_a_stock_changed_meanwhile_is_a_conflict(database_url: str) -> None:
    async with running_shop(database_url, modules=[catalog, inventory]) as runtime:
        await runtime.bus.send(AddProduct(sku="TEA", name="Tea", price_cents=100), principal=SYSTEM)
        assert await runtime.settle()  # inventory created the stock at zero
        stock = StockRecords(Transaction())
        async with two_units(runtime) as (first, second):
            first_read = await within(first, lambda: stock.get("TEA"))
            second_read = await within(second, lambda: stock.get("TEA"))
            assert first_read is not None and second_read is not None
            first_read.restock(5)
            await within(first, lambda: stock.save(first_read))
            await first.commit()

            second_read.restock(3)  # from the level it read, which is no longer the level
            with pytest.raises(ConcurrencyConflict, match="stock TEA changed meanwhile") as lost:
                await within(second, lambda: stock.save(second_read))
                await second.commit()
            assert second.transient(lost.value)  # the dispatcher runs the restock again

        level = await runtime.bus.ask(GetStock(sku="TEA"))
        assert (level.on_hand, level.reserved) == (5, 0)


async def test_a_second_reservation_of_one_order_is_a_conflict(database_url: str) -> None:
    async with running_shop(database_url, modules=[catalog, inventory]) as runtime:
        reservations = Reservations(Transaction())
        async with two_units(runtime) as (first, second):
            # Two deliveries of ReserveStock for one order, at once: neither finds a reservation.
            assert await within(first, lambda: reservations.get("order-1")) is None
            assert await within(second, lambda: reservations.get("order-1")) is None
            failed = Reservation(
                order_id="order-1", status=ReservationStatus.FAILED, failure="unknown_sku"
            )
            await within(first, lambda: reservations.add(failed))
            await first.commit()

            with pytest.raises(ConcurrencyConflict, match="reservation order-1 exists") as lost:
                await within(second, lambda: reservations.add(failed))
                await second.commit()
            assert second.transient(lost.value)  # run again, it answers what the first did


async def test_stocks_stored_together_are_stored_all_or_none(database_url: str) -> None:
    """An order's stock records go in one statement (one round trip): if one of them changed
    meanwhile, none of them is stored, and the unit of work runs again."""
    async with running_shop(database_url, modules=[catalog, inventory]) as runtime:
        for sku in ("TEA", "JAM", "OAT"):
            await runtime.bus.send(AddProduct(sku=sku, name=sku, price_cents=100), principal=SYSTEM)
        assert await runtime.settle()
        stock = StockRecords(Transaction())
        async with two_units(runtime) as (first, second):
            skus = ["TEA", "JAM", "OAT"]
            first_read = await within(first, lambda: stock.get("JAM"))
            # Read without locks (``get_many`` would make the first wait on PostgreSQL).
            second_reads = {sku: await within(second, partial(stock.get, sku)) for sku in skus}
            assert first_read is not None
            first_read.restock(5)
            await within(first, lambda: stock.save(first_read))
            await first.commit()

            together = [record for record in second_reads.values() if record is not None]
            for record in together:
                record.restock(3)
            with pytest.raises(ConcurrencyConflict, match="changed meanwhile") as lost:
                await within(second, lambda: stock.save_all(together))
                await second.commit()
            assert second.transient(lost.value)

        levels = {sku: (await runtime.bus.ask(GetStock(sku=sku))).on_hand for sku in skus}
        assert levels == {"TEA": 0, "JAM": 5, "OAT": 0}

        # Nobody in the way: all three are stored, each once.
        async with two_units(runtime) as (third, _):
            reads = await within(third, lambda: stock.get_many(skus))
            for record in reads.values():
                record.restock(2)
            await within(third, lambda: stock.save_all(list(reads.values())))
            await third.commit()
        levels = {sku: (await runtime.bus.ask(GetStock(sku=sku))).on_hand for sku in skus}
        assert levels == {"TEA": 2, "JAM": 7, "OAT": 2}


async def test_a_conflict_of_writes_sent_with_the_outbox_records_stores_neither(
    database_url: str,
) -> None:
    """On PostgreSQL the writes go in one statement with the unit's outbox records: when
    one of them loses the race, no stock, no reservation and no event is stored."""
    with sandbox_payments(TEST_SETTINGS) as payments:
        async with running_shop(database_url, payment_provider=payments.provider) as runtime:
            await _race_with_an_event(runtime)
        await payments.provider.close()


async def _race_with_an_event(runtime: Runtime) -> None:
    skus = ("TEA", "JAM")
    for sku in skus:
        await runtime.bus.send(AddProduct(sku=sku, name=sku, price_cents=100), principal=SYSTEM)
    assert await runtime.settle()
    stock = StockRecords(Transaction())
    reservations = Reservations(Transaction())

    async def reserve(unit: UnitOfWork, records: list[Stock], order_id: str) -> None:
        await within(unit, lambda: stock.save_all(records))
        reserved = Reservation(order_id=order_id, status=ReservationStatus.RESERVED)
        await within(unit, lambda: reservations.add(reserved))
        unit.emit(StockReserved(order_id=order_id))  # ordering takes it
        await unit.commit()

    # Nobody in the way (and each statement used once: the second use is the fast path's).
    async with two_units(runtime) as (first, _):
        reads = await within(first, lambda: stock.get_many(list(skus)))
        for record in reads.values():
            record.restock(2)
        await reserve(first, list(reads.values()), "order-0")

    async with two_units(runtime) as (first, second):
        first_read = await within(first, lambda: stock.get("JAM"))
        second_reads = [await within(second, partial(stock.get, sku)) for sku in skus]
        assert first_read is not None
        first_read.restock(5)
        await within(first, lambda: stock.save(first_read))
        await first.commit()

        together = [record for record in second_reads if record is not None]
        for record in together:
            record.restock(3)
        with pytest.raises(ConcurrencyConflict, match="stock TEA, JAM changed meanwhile"):
            await reserve(second, together, "order-1")

    assert await runtime.settle()
    levels = {sku: (await runtime.bus.ask(GetStock(sku=sku))).on_hand for sku in skus}
    assert levels == {"TEA": 2, "JAM": 7}
    assert runtime.receiver is not None
    storage = runtime.receiver.dispatcher.handler_of(Restock).storage
    async with storage.database.connect() as connection:
        stored = await connection.scalar(
            text("SELECT count(*) FROM inventory_reservations WHERE order_id = 'order-1'")
        )
        events = await connection.scalar(
            text("SELECT count(*) FROM inventory_outbox WHERE body LIKE '%order-1%'")
        )
    assert (stored, events) == (0, 0)

"""Ordering's price cache (issue 12, ADR 0018), over every transport: a price change reaches
the cache through the catalog's event, so the next order costs no call to the catalog; and
an order priced from the cache at a price the catalog had already changed is not charged
that price, even when the change's event reached ordering only after the order was placed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kernel import SYSTEM, Envelope, Message, Principal
from kernel.bus import Call, Transport
from kernel.runtime import Runtime
from modules.catalog.contracts import AddProduct, GetProducts, ProductUpdated, UpdateProduct
from modules.inventory.contracts import ReserveStock, Restock
from modules.ordering.contracts import (
    REASON_PRICE_CHANGED,
    GetOrder,
    OrderLineRequest,
    OrderView,
    PlaceOrder,
)
from modules.ordering.prices import PriceBook
from modules.ordering.settings import OrderingSettings
from tests.contracts.shop.sandbox import Payments, sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.harness import Transport as TransportName

pytestmark = pytest.mark.anyio

ADA = Principal(subject="customer-ada", roles=("customer",))
TEA = [OrderLineRequest(sku="TEA", quantity=2)]


class Watched:
    """The test's real transport, counting the catalog's ``GetProducts`` asks and holding
    chosen deliveries (module, message type) until the test lets them through."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.asks = 0
        self.held: dict[tuple[str, type[Message]], asyncio.Event] = {}
        self.delivered: dict[tuple[str, type[Message]], asyncio.Event] = {}

    def requester(self, module: str, message: type[Message]) -> Call:
        ask = self._inner.requester(module, message)
        if message is not GetProducts:
            return ask

        async def counted(query: Message, envelope: Envelope) -> Any:
            self.asks += 1
            return await ask(query, envelope)

        return counted

    def deliverer(self, module: str) -> Call:
        deliver = self._inner.deliverer(module)

        async def gated(message: Message, envelope: Envelope) -> Any:
            key = (module, type(message))
            gate = self.held.get(key)
            if gate is not None:
                await gate.wait()
            result = await deliver(message, envelope)
            self.delivered.setdefault(key, asyncio.Event()).set()
            return result

        return gated

    def hold(self, module: str, message: type[Message]) -> None:
        self.held[(module, message)] = asyncio.Event()
        self.delivered.pop((module, message), None)

    async def let_through(self, module: str, message: type[Message]) -> None:
        """Release the held deliveries and return once one was handled."""
        self.held.pop((module, message)).set()
        handled = self.delivered.setdefault((module, message), asyncio.Event())
        async with asyncio.timeout(10):
            await handled.wait()


@asynccontextmanager
async def shop(
    url: str, transport: TransportName, **ports: Any
) -> AsyncIterator[tuple[Runtime, Payments, Watched]]:
    """The whole shop with TEA at 4.50 and stock of it."""
    watched: list[Watched] = []

    def wrap(inner: Transport) -> Transport:
        watched.append(Watched(inner))
        return watched[0]

    with sandbox_payments(TEST_SETTINGS) as payments:
        async with running_shop(
            url,
            transport=transport,
            payment_provider=payments.provider,
            wrap_transport=wrap,
            **ports,
        ) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
            await bus.send(Restock(sku="TEA", quantity=100), principal=SYSTEM)
            yield runtime, payments, watched[0]
        await payments.provider.close()


async def place(runtime: Runtime) -> OrderView:
    placed: OrderView = await runtime.bus.send(
        PlaceOrder(lines=TEA, payment_token="tok_ok"), principal=ADA
    )
    return placed


async def settled(runtime: Runtime, placed: OrderView) -> OrderView:
    assert await runtime.settle()
    found: OrderView = await runtime.bus.ask(GetOrder(order_id=placed.id), principal=ADA)
    return found


def captured(payments: Payments, order: OrderView) -> list[int]:
    return [
        charge["amount_cents"]
        for charge in payments.charges(order.id)
        if charge["status"] == "captured"
    ]


async def test_a_price_change_reaches_the_cache_through_the_event(
    sqlite_url: str, transport: TransportName
) -> None:
    async with shop(sqlite_url, transport) as (runtime, payments, watched):
        first = await settled(runtime, await place(runtime))
        assert watched.asks == 1  # the first order fills the cache
        await runtime.bus.send(UpdateProduct(sku="TEA", price_cents=500), principal=SYSTEM)
        assert await runtime.settle()  # ProductUpdated reached ordering
        second = await settled(runtime, await place(runtime))
        asks = watched.asks
        charged = captured(payments, second)
    assert first.status == "CONFIRMED" and first.total_cents == 900
    assert asks == 1, "the second order asked the catalog"
    assert (second.status, second.lines[0].unit_price_cents, second.total_cents) == (
        "CONFIRMED",
        500,
        1000,
    )
    assert charged == [1000]


async def test_an_order_priced_before_the_event_arrived_is_not_charged_the_old_price(
    sqlite_url: str, transport: TransportName
) -> None:
    async with shop(sqlite_url, transport) as (runtime, payments, watched):
        await settled(runtime, await place(runtime))  # TEA at 4.50 is cached
        # The price changes, and its event has not reached ordering when the next order is
        # placed; the stock reservation waits until it has, so the capture comes after it.
        watched.hold("ordering", ProductUpdated)
        watched.hold("inventory", ReserveStock)
        await runtime.bus.send(UpdateProduct(sku="TEA", price_cents=500), principal=SYSTEM)
        stale = await place(runtime)
        await watched.let_through("ordering", ProductUpdated)
        watched.held.pop(("inventory", ReserveStock)).set()
        stale = await settled(runtime, stale)
        fresh = await settled(runtime, await place(runtime))
        charges = payments.charges()
    # Priced from the cache at the old price, as the order's answer said...
    assert stale.total_cents == 900
    # ...but never charged it: cancelled, and the stock went back.
    assert (stale.status, stale.reason) == ("CANCELLED", f"{REASON_PRICE_CHANGED}: TEA")
    assert [charge for charge in charges if charge["reference"] == stale.id] == []
    # The next order pays the new price.
    assert (fresh.status, fresh.total_cents) == ("CONFIRMED", 1000)


async def test_without_the_cache_every_order_asks_the_catalog(sqlite_url: str) -> None:
    off = {OrderingSettings: OrderingSettings(price_cache_seconds=0)}
    async with shop(sqlite_url, "inprocess", ports=off) as (runtime, _, watched):
        for _ in range(3):
            await place(runtime)
        asks = watched.asks
    assert asks == 3


# -- the book itself, on a clock the test moves ---------------------------------------------


class Ticking:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_cached_price_is_used_only_while_it_is_young(sqlite_url: str) -> None:
    clock = Ticking()
    book = {PriceBook: PriceBook(max_age_seconds=30.0, monotonic=clock)}
    async with shop(sqlite_url, "inprocess", ports=book) as (runtime, _, watched):
        await place(runtime)
        clock.now = 29.0
        await place(runtime)
        young = watched.asks
        clock.now = 30.0
        await place(runtime)
        old = watched.asks
    assert (young, old) == (1, 2)


def test_an_order_is_stale_only_for_a_change_made_before_it_was_placed() -> None:
    book = PriceBook(max_age_seconds=30.0)
    book.changed("TEA", 0, 450, "EUR", changed_at=0.0)
    assert book.changed_before({"TEA": 0}, placed_at=100.0) is None
    book.changed("TEA", 1, 500, "EUR", changed_at=200.0)
    # Placed before the change: it keeps its price. After it, at version 0: stale.
    assert book.changed_before({"TEA": 0}, placed_at=150.0) is None
    assert book.changed_before({"TEA": 0}, placed_at=250.0) == "TEA"
    assert book.changed_before({"TEA": 1}, placed_at=250.0) is None
    # A change of name only (version 2, same price) is no change of price...
    book.changed("TEA", 2, 500, "EUR", changed_at=300.0)
    assert book.changed_before({"TEA": 1}, placed_at=350.0) is None
    # ...and what counts is the price when the order was placed, whatever came after.
    book.changed("TEA", 3, 450, "EUR", changed_at=400.0)
    assert book.changed_before({"TEA": 0}, placed_at=350.0) == "TEA"
    assert book.changed_before({"TEA": 1}, placed_at=450.0) == "TEA"
    # A newer version known without the time of the change after the order's: stale.
    book.changed("COFFEE", 3, 900, "EUR", changed_at=0.0)
    assert book.changed_before({"COFFEE": 2}, placed_at=1.0) == "COFFEE"

"""Placing orders through the bus, over every transport: a retry under an idempotency key
places and charges nothing more, a customer's orders are limited in number and pace, a
settled saga keeps no card token, and customers read plain reasons (issue 11, items 4, 8,
12 and 14)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kernel import SYSTEM, Conflict, Envelope, Forbidden, Message, Principal, Unavailable
from kernel.bus import Call, Transport
from kernel.runtime import Runtime
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.notifications.contracts import ListNotifications
from modules.ordering.contracts import (
    IDEMPOTENCY_KEY_REUSED,
    TOO_MANY_OPEN_ORDERS,
    TOO_MANY_ORDERS,
    ForgetIdempotencyKeys,
    GetOrder,
    ListOrders,
    OrderLineRequest,
    OrderView,
    PlaceOrder,
)
from modules.ordering.settings import OrderingSettings
from modules.payments.contracts import GetCharges
from tests.contracts.shop.sandbox import Payments, sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.harness import Transport as TransportName

pytestmark = pytest.mark.anyio

ADA = Principal(subject="customer-ada", roles=("customer",))
BOB = Principal(subject="customer-bob", roles=("customer",))
DAY = 86_400.0


class ShiftedClock:
    """The wall clock, moved forward at will: a day passes in a test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def order(token: str = "tok_ok", quantity: int = 1, key: str | None = None) -> PlaceOrder:
    return PlaceOrder(
        lines=[OrderLineRequest(sku="TEA", quantity=quantity)],
        payment_token=token,
        idempotency_key=key,
    )


@asynccontextmanager
async def shop(
    url: str, transport: TransportName, stock: int = 100, **ports: Any
) -> AsyncIterator[tuple[Runtime, Payments]]:
    """The whole shop with TEA at 4.50 and ``stock`` of it (none: no stock record)."""
    with sandbox_payments(TEST_SETTINGS) as payments:
        async with running_shop(
            url, transport=transport, payment_provider=payments.provider, **ports
        ) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
            if stock:
                await bus.send(Restock(sku="TEA", quantity=stock), principal=SYSTEM)
            yield runtime, payments
        await payments.provider.close()


async def settled(runtime: Runtime, placed: OrderView, customer: Principal = ADA) -> OrderView:
    assert await runtime.settle()
    found: OrderView = await runtime.bus.ask(GetOrder(order_id=placed.id), principal=customer)
    return found


# -- item 4: a retried PlaceOrder charges once -----------------------------------------------


async def test_a_retry_under_the_same_key_gets_the_first_order_and_one_charge(
    sqlite_url: str, transport: TransportName
) -> None:
    async with shop(sqlite_url, transport) as (runtime, payments):
        bus = runtime.bus
        first = await bus.send(order(key="order-1"), principal=ADA)
        confirmed = await settled(runtime, first)
        again = await bus.send(order(key="order-1"), principal=ADA)
        assert await runtime.settle()
        listed = await bus.ask(ListOrders(), principal=ADA)
        charges = payments.charges()
    assert confirmed.status == "CONFIRMED"
    # The retry answers the order placed the first time, as it is now.
    assert again == confirmed
    assert [placed.id for placed in listed] == [first.id]
    assert [(charge["reference"], charge["status"]) for charge in charges] == [
        (first.id, "captured")
    ]


async def concurrent_retries(url: str, transport: TransportName) -> None:
    async with shop(url, transport) as (runtime, payments):
        bus = runtime.bus
        answers = await asyncio.gather(
            *(bus.send(order(key="double-click"), principal=ADA) for _ in range(5))
        )
        assert await runtime.settle()
        listed = await bus.ask(ListOrders(), principal=ADA)
        charges = payments.charges()
    assert len({answer.id for answer in answers}) == 1
    assert [placed.id for placed in listed] == [answers[0].id]
    assert [charge["reference"] for charge in charges] == [answers[0].id]


async def test_concurrent_retries_place_one_order(
    sqlite_url: str, transport: TransportName
) -> None:
    await concurrent_retries(sqlite_url, transport)


@pytest.mark.postgres
async def test_concurrent_retries_place_one_order_on_postgresql(postgres_url: str) -> None:
    # Both transactions insert the key; the unique key makes the later one run again.
    await concurrent_retries(postgres_url, "inprocess")


async def test_another_order_under_a_used_key_is_refused_and_keys_are_per_customer(
    sqlite_url: str, transport: TransportName
) -> None:
    async with shop(sqlite_url, transport) as (runtime, _):
        bus = runtime.bus
        first = await bus.send(order(key="k"), principal=ADA)
        with pytest.raises(Conflict) as refused:
            await bus.send(order(quantity=2, key="k"), principal=ADA)
        with pytest.raises(Conflict):
            await bus.send(order(token="tok_declined", key="k"), principal=ADA)
        # Bob's "k" is his own.
        bobs = await bus.send(order(quantity=2, key="k"), principal=BOB)
        # Without a key, the same order twice is two orders.
        await bus.send(order(), principal=ADA)
        await bus.send(order(), principal=ADA)
        assert await runtime.settle()
        adas = await bus.ask(ListOrders(), principal=ADA)
    assert (refused.value.code, refused.value.field) == (IDEMPOTENCY_KEY_REUSED, "idempotency_key")
    assert bobs.id != first.id and bobs.customer_id == BOB.subject
    assert len(adas) == 3


async def test_keys_are_kept_a_day_then_forgotten(sqlite_url: str) -> None:
    clock = ShiftedClock()
    async with shop(sqlite_url, "inprocess", clock=clock) as (runtime, _):
        bus = runtime.bus
        first = await settled(runtime, await bus.send(order(key="k"), principal=ADA))
        clock.offset = DAY - 60
        assert await bus.send(ForgetIdempotencyKeys(), principal=SYSTEM) == 0
        assert (await bus.send(order(key="k"), principal=ADA)).id == first.id
        with pytest.raises(Forbidden):
            await bus.send(ForgetIdempotencyKeys(), principal=ADA)
        clock.offset = DAY + 1
        assert await bus.send(ForgetIdempotencyKeys(), principal=SYSTEM) == 1
        # Forgotten: the same key now places a new order.
        later = await bus.send(order(key="k"), principal=ADA)
    assert later.id != first.id


# -- item 12: per-customer limits ------------------------------------------------------------


class InventoryAway:
    """A transport over which nothing reaches inventory: every order waits for its stock."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    def requester(self, module: str, message: type[Message]) -> Call:
        return self._inner.requester(module, message)

    def deliverer(self, module: str) -> Call:
        if module != "inventory":
            return self._inner.deliverer(module)

        async def away(message: Message, envelope: Envelope) -> Any:
            raise Unavailable("inventory is away")

        return away


async def test_a_customer_has_at_most_so_many_pending_orders(
    sqlite_url: str, transport: TransportName
) -> None:
    limits = {OrderingSettings: OrderingSettings(max_open_orders=2)}
    async with shop(sqlite_url, transport, stock=0, ports=limits, wrap_transport=InventoryAway) as (
        runtime,
        _,
    ):
        bus = runtime.bus
        for _ in range(2):
            await bus.send(order(), principal=ADA)
        with pytest.raises(Conflict) as refused:
            await bus.send(order(), principal=ADA)
        # Others are not held back by Ada.
        await bus.send(order(), principal=BOB)
        listed = await bus.ask(ListOrders(), principal=ADA)
    assert refused.value.code == TOO_MANY_OPEN_ORDERS
    assert [placed.status for placed in listed] == ["PENDING", "PENDING"]


async def test_a_customer_places_at_most_so_many_orders_a_minute(
    sqlite_url: str, transport: TransportName
) -> None:
    # No stock: each order is rejected at once, as in the report (10,000 rejected in 75 s).
    limits = {OrderingSettings: OrderingSettings(orders_per_minute=3)}
    clock = ShiftedClock()
    async with shop(sqlite_url, transport, stock=0, ports=limits, clock=clock) as (runtime, _):
        bus = runtime.bus
        for _ in range(3):
            await settled(runtime, await bus.send(order(), principal=ADA))
        with pytest.raises(Conflict) as refused:
            await bus.send(order(), principal=ADA)
        await bus.send(order(), principal=BOB)
        clock.offset = 61
        await bus.send(order(), principal=ADA)  # a minute later, Ada may again
        assert await runtime.settle()
        listed = await bus.ask(ListOrders(), principal=ADA)
    assert refused.value.code == TOO_MANY_ORDERS
    assert len(listed) == 4


# -- items 8 and 14: what a settled order keeps, and what the customer reads ------------------


async def test_settled_sagas_keep_no_payment_token(
    tmp_path: Path, transport: TransportName
) -> None:
    path = tmp_path / "shop.db"
    async with shop(f"sqlite+aiosqlite:///{path}", transport, stock=3) as (runtime, _):
        bus = runtime.bus
        placed = [
            await bus.send(order(token=token, quantity=quantity), principal=ADA)
            for token, quantity in (
                ("tok_ok", 1),
                ("tok_declined", 1),
                ("tok_error", 1),
                ("tok_ok", 5),  # more than there is: rejected
            )
        ]
        assert await runtime.settle()
        statuses = [
            (await bus.ask(GetOrder(order_id=one.id), principal=ADA)).status for one in placed
        ]
        with sqlite3.connect(path) as database:
            tokens = database.execute("SELECT payment_token FROM ordering_sagas").fetchall()
    assert statuses == ["CONFIRMED", "CANCELLED", "CANCELLED", "REJECTED"]
    assert tokens == [("",)] * 4


async def test_customers_read_plain_reasons_and_admins_the_providers_words(
    sqlite_url: str, transport: TransportName
) -> None:
    async with shop(sqlite_url, transport) as (runtime, _):
        bus = runtime.bus
        failed = await settled(runtime, await bus.send(order(token="tok_error"), principal=ADA))
        declined = await settled(
            runtime, await bus.send(order(token="tok_declined"), principal=ADA)
        )
        notes = {
            note.order_id: note.body for note in await bus.ask(ListNotifications(), principal=ADA)
        }
        admin = Principal(subject="admin", roles=("admin",))
        charges = await bus.ask(GetCharges(order_id=failed.id), principal=admin)
    assert (failed.status, failed.reason) == ("CANCELLED", "payment_failed")
    assert (declined.status, declined.reason) == ("CANCELLED", "payment_declined")
    assert notes[failed.id] == (
        f"Order {failed.id} was cancelled: the payment could not be processed. "
        "Nothing was charged and nothing will ship."
    )
    assert notes[declined.id] == (
        f"Order {declined.id} was cancelled: the payment was declined. "
        "Nothing was charged and nothing will ship."
    )
    # The details stay where admins look.
    assert [charge.status for charge in charges] == ["FAILED", "VOIDED"]
    assert "the provider answered 500" in (charges[0].reason or "")

"""Ordering driven through the bus by hypothesis, with the whole shop behind it.

Customers place orders (repeated SKUs, tokens that pay, are declined or fail), sometimes
several at once for the same stock; admins restock; everyone reads and lists orders. After
each step the shop is settled and compared with a model:

* an order is placed PENDING at the catalog's prices, with its lines as requested, and ends
  CONFIRMED when the stock was there and the payment went through, REJECTED when the stock
  was short, CANCELLED (payment_declined / payment_failed) otherwise;
* stock on hand goes down by exactly what confirmed orders bought, and nothing stays
  reserved once the shop is settled;
* an unknown SKU or mixed currencies are refused naming the line, before anything is stored;
* an order is visible to its customer and to admins only (others get NotFound), and a
  customer's list holds exactly their orders, newest first.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kernel import SYSTEM, Forbidden, NotFound, Principal, Rejected, Unauthenticated
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import GetStock, Restock
from modules.ordering.contracts import (
    MIXED_CURRENCIES,
    ORDER_NOT_FOUND,
    UNKNOWN_SKU,
    GetOrder,
    ListOrders,
    OrderLineRequest,
    OrderView,
    PlaceOrder,
)
from tests.contracts.shop.sandbox import Payments, sandbox_payments
from tests.support.harness import TEST_SETTINGS, SyncDriver, running_shop
from tests.support.harness import Transport as TransportName

#: sku -> (price in cents, currency)
PRODUCTS = {"TEA": (450, "EUR"), "POT": (2_000, "EUR"), "CUP": (300, "EUR"), "MUG": (900, "USD")}
EUR_SKUS = ["TEA", "POT", "CUP"]
CUSTOMERS = [Principal(subject=f"customer-{name}", roles=("customer",)) for name in "ab"]
ADMIN = Principal(subject="admin-1", roles=("admin", "customer"))
#: The final status and the start of the reason each token leads to, with stock available.
OUTCOMES = {
    "tok_ok": ("CONFIRMED", None),
    "tok_declined": ("CANCELLED", "payment_declined"),
    "tok_error": ("CANCELLED", "payment_failed"),
}

LINES = st.lists(st.tuples(st.sampled_from(EUR_SKUS), st.integers(1, 3)), min_size=1, max_size=3)
TOKENS = st.sampled_from(["tok_ok", "tok_ok", "tok_declined", "tok_error"])


def wanted(lines: list[tuple[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for sku, quantity in lines:
        total[sku] += quantity
    return total


def order_of(lines: list[tuple[str, int]], token: str) -> PlaceOrder:
    return PlaceOrder(
        lines=[OrderLineRequest(sku=sku, quantity=quantity) for sku, quantity in lines],
        payment_token=token,
    )


class OrderingMachine(RuleBasedStateMachine):
    def __init__(
        self, driver: SyncDriver, transport: TransportName, url: str, payments: Payments
    ) -> None:
        super().__init__()
        self.driver = driver
        self._shop = running_shop(url, transport=transport, payment_provider=payments.provider)
        self.runtime = driver.run(self._shop.__aenter__())
        self.bus = self.runtime.bus
        for sku, (price, currency) in PRODUCTS.items():
            self.run(
                self.bus.send(
                    AddProduct(sku=sku, name=sku.title(), price_cents=price, currency=currency),
                    principal=SYSTEM,
                )
            )
        self.on_hand: Counter[str] = Counter()
        #: order id -> (customer, expected final status, created order)
        self.orders: dict[str, tuple[Principal, str, OrderView]] = {}

    def teardown(self) -> None:
        self.driver.run(self._shop.__aexit__(None, None, None))

    def run(self, awaitable: Any) -> Any:
        return self.driver.run(awaitable)

    def settle(self) -> None:
        assert self.run(self.runtime.settle()), "the shop did not settle"

    def placed(self, order: OrderView, customer: Principal, lines: list[tuple[str, int]]) -> None:
        assert order.status == "PENDING"
        assert order.customer_id == customer.subject
        assert [(line.sku, line.quantity) for line in order.lines] == lines  # kept as asked
        assert all(line.unit_price_cents == PRODUCTS[line.sku][0] for line in order.lines)
        assert order.total_cents == sum(q * PRODUCTS[sku][0] for sku, q in lines)
        assert order.currency == "EUR"

    def final(self, order: OrderView) -> OrderView:
        settled: OrderView = self.run(self.bus.ask(GetOrder(order_id=order.id), principal=SYSTEM))
        assert settled.status != "PENDING", settled
        assert (settled.lines, settled.total_cents) == (order.lines, order.total_cents)
        return settled

    # -- rules ------------------------------------------------------------------------------

    @initialize(stock=st.lists(st.integers(0, 15), min_size=len(PRODUCTS), max_size=len(PRODUCTS)))
    def stock_the_shelves(self, stock: list[int]) -> None:
        for sku, quantity in zip(sorted(PRODUCTS), stock, strict=True):
            if quantity:
                self.restock(sku, quantity)

    @rule(sku=st.sampled_from(sorted(PRODUCTS)), quantity=st.integers(1, 10))
    def restock(self, sku: str, quantity: int) -> None:
        level = self.run(self.bus.send(Restock(sku=sku, quantity=quantity), principal=ADMIN))
        self.on_hand[sku] += quantity
        assert level.on_hand == self.on_hand[sku]

    @rule(customer=st.sampled_from(CUSTOMERS), lines=LINES, token=TOKENS)
    def place_order(self, customer: Principal, lines: list[tuple[str, int]], token: str) -> None:
        order = self.run(self.bus.send(order_of(lines, token), principal=customer))
        self.placed(order, customer, lines)
        self.settle()
        settled = self.final(order)
        want = wanted(lines)
        if all(self.on_hand[sku] >= quantity for sku, quantity in want.items()):
            status, reason = OUTCOMES[token]
            if status == "CONFIRMED":
                self.on_hand -= want
        else:
            status, reason = "REJECTED", "insufficient_stock"
        assert settled.status == status, settled
        assert (settled.reason or "").startswith(reason or ""), settled
        assert (settled.reason is None) == (status == "CONFIRMED")
        self.orders[order.id] = (customer, status, settled)

    @rule(
        orders=st.lists(
            st.tuples(st.sampled_from(CUSTOMERS), LINES, TOKENS), min_size=2, max_size=4
        )
    )
    def place_orders_at_once(self, orders: list[tuple[Principal, list[Any], str]]) -> None:
        async def all_at_once() -> list[OrderView]:
            return list(
                await asyncio.gather(
                    *(
                        self.bus.send(order_of(lines, token), principal=customer)
                        for customer, lines, token in orders
                    )
                )
            )

        placed = self.run(all_at_once())
        self.settle()
        bought: Counter[str] = Counter()
        for order, (customer, lines, token) in zip(placed, orders, strict=True):
            self.placed(order, customer, lines)
            settled = self.final(order)
            if settled.status == "CONFIRMED":
                assert token == "tok_ok"
                bought += wanted(lines)
            elif settled.status == "REJECTED":
                assert (settled.reason or "").startswith("insufficient_stock"), settled
            else:
                assert settled.status == OUTCOMES[token][0], settled
            self.orders[order.id] = (customer, settled.status, settled)
        # Whoever won the race, no more was sold than there was.
        assert all(bought[sku] <= self.on_hand[sku] for sku in bought)
        everything = wanted([line for _, lines, _ in orders for line in lines])
        if all(token == "tok_ok" for _, _, token in orders) and not everything - self.on_hand:
            assert bought == everything  # enough for all of them: all of them are confirmed
        self.on_hand -= bought

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        lines=LINES,
        position=st.integers(0, 3),
        unknown=st.sampled_from(["NOPE", "tea", "TEA-2"]),
    )
    def place_unknown_sku(
        self, customer: Principal, lines: list[tuple[str, int]], position: int, unknown: str
    ) -> None:
        position = min(position, len(lines))
        lines = [*lines[:position], (unknown, 1), *lines[position:]]
        with pytest.raises(Rejected) as refused:
            self.run(self.bus.send(order_of(lines, "tok_ok"), principal=customer))
        assert (refused.value.code, refused.value.field) == (UNKNOWN_SKU, f"lines[{position}].sku")

    @rule(customer=st.sampled_from(CUSTOMERS), lines=LINES)
    def place_mixed_currencies(self, customer: Principal, lines: list[tuple[str, int]]) -> None:
        with pytest.raises(Rejected) as refused:
            self.run(self.bus.send(order_of([*lines, ("MUG", 1)], "tok_ok"), principal=customer))
        assert (refused.value.code, refused.value.field) == (
            MIXED_CURRENCIES,
            f"lines[{len(lines)}].sku",
        )

    @rule(lines=LINES)
    def place_without_the_right(self, lines: list[tuple[str, int]]) -> None:
        with pytest.raises(Unauthenticated):
            self.run(self.bus.send(order_of(lines, "tok_ok")))
        with pytest.raises(Forbidden):
            stranger = Principal(subject="svc", roles=(), kind="service")
            self.run(self.bus.send(order_of(lines, "tok_ok"), principal=stranger))

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), reader=st.sampled_from([*CUSTOMERS, ADMIN]))
    def read_an_order(self, data: st.DataObject, reader: Principal) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        owner, _, settled = self.orders[order_id]
        query = GetOrder(order_id=order_id)
        if reader in (owner, ADMIN):
            assert self.run(self.bus.ask(query, principal=reader)) == settled
        else:
            with pytest.raises(NotFound) as missing:
                self.run(self.bus.ask(query, principal=reader))
            assert missing.value.code == ORDER_NOT_FOUND
            # Exactly as for an order that does not exist.
            with pytest.raises(NotFound) as absent:
                self.run(self.bus.ask(GetOrder(order_id="no-such-order"), principal=reader))
            assert absent.value.code == ORDER_NOT_FOUND

    @rule(customer=st.sampled_from([*CUSTOMERS, ADMIN]))
    def list_orders(self, customer: Principal) -> None:
        listed = self.run(self.bus.ask(ListOrders(), principal=customer))
        own = {oid for oid, (owner, _, _) in self.orders.items() if owner == customer}
        assert {order.id for order in listed} == own
        assert [order.created_at for order in listed] == sorted(
            (order.created_at for order in listed), reverse=True
        )

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def stock_is_what_confirmed_orders_left(self) -> None:
        for sku in PRODUCTS:
            level = self.run(self.bus.ask(GetStock(sku=sku)))
            assert (level.on_hand, level.reserved) == (self.on_hand[sku], 0), level
            assert level.available == level.on_hand

    @invariant()
    def orders_keep_their_outcome(self) -> None:
        for order_id, (_, status, _) in self.orders.items():
            order = self.run(self.bus.ask(GetOrder(order_id=order_id), principal=SYSTEM))
            assert order.status == status


@pytest.fixture
def payments(driver: SyncDriver) -> Iterator[Payments]:
    with sandbox_payments(TEST_SETTINGS) as started:
        yield started
        driver.run(started.provider.close())


@pytest.mark.slow
def test_ordering_follows_its_model(
    driver: SyncDriver,
    transport: TransportName,
    database_url: str,
    tmp_path: Path,
    payments: Payments,
) -> None:
    examples = itertools.count()

    def machine() -> OrderingMachine:
        url = database_url  # PostgreSQL: each example gets a schema of its own
        if url.startswith("sqlite"):
            url = f"sqlite+aiosqlite:///{tmp_path / f'ordering-{next(examples)}.db'}"
        return OrderingMachine(driver, transport, url, payments)

    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=5, stateful_step_count=10, deadline=None),
    )

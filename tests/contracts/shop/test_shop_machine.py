"""The whole shop through the bus, driven by hypothesis in random interleavings.

Users register, admins add products and restock, customers place orders with tokens that
pay (mostly), are declined, fail, or hang past the payment timeout; the shop settles only
some of the time, so sagas are in flight while the next steps happen. After every step:

* stock never goes below zero, anywhere; on hand is what was restocked minus what orders
  bought (between the bounds that orders still in flight allow), and reserved stock is
  held only by orders still PENDING;
* no order has more than one charge at the provider, a CONFIRMED order's charge is captured,
  and a REJECTED or CANCELLED order's is not (a terminal status means everything settled).

At the end, once the shop settles: every order is terminal, the confirmed orders are
exactly the orders the provider charged, and nothing is reserved any more.
"""

from __future__ import annotations

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

from kernel import SYSTEM, Conflict, Principal
from modules.catalog.contracts import DUPLICATE_SKU, AddProduct
from modules.identity.contracts import RegisterUser
from modules.inventory.contracts import GetStock, Restock
from modules.ordering.contracts import GetOrder, OrderLineRequest, OrderView, PlaceOrder
from tests.contracts.shop.sandbox import Payments, sandbox_payments
from tests.support.harness import TEST_SETTINGS, SyncDriver, running_shop
from tests.support.harness import Transport as TransportName

SKUS = ["TEA", "POT", "CUP", "JAM"]
ADMIN = Principal(subject="admin-1", roles=("admin", "customer"))
OPERATORS = st.sampled_from([SYSTEM, ADMIN])
#: Mostly paying; tok_slow outlasts the 0.5 s payment timeout (and costs a second).
TOKENS = st.sampled_from(["tok_ok"] * 6 + ["tok_declined", "tok_error"]) | st.just("tok_slow")
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}


class ShopMachine(RuleBasedStateMachine):
    def __init__(
        self, driver: SyncDriver, transport: TransportName, url: str, payments: Payments
    ) -> None:
        super().__init__()
        self.driver = driver
        self.payments = payments
        self._shop = running_shop(url, transport=transport, payment_provider=payments.provider)
        self.runtime = driver.run(self._shop.__aenter__())
        self.bus = self.runtime.bus
        self.customers: list[Principal] = []
        self.products: set[str] = set()
        self.restocked: Counter[str] = Counter()
        #: order id -> what it asked for, per SKU
        self.orders: dict[str, Counter[str]] = {}
        self._emails = itertools.count()
        #: Charges of earlier examples (the sandbox lives as long as the test).
        self._earlier = set(self.charges())

    def run(self, awaitable: Any) -> Any:
        return self.driver.run(awaitable)

    def teardown(self) -> None:
        try:
            self.settle()
            self.everything_settled()
        finally:
            self.run(self._shop.__aexit__(None, None, None))

    # -- rules ------------------------------------------------------------------------------

    @initialize(
        names=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=2),
        stock=st.lists(st.integers(0, 20), min_size=2, max_size=2),
    )
    def open_the_shop(self, names: list[str], stock: list[int]) -> None:
        for name in names:
            self.register(name)
        for sku, quantity in zip(SKUS, stock, strict=False):
            self.add_product(sku, 450, SYSTEM)
            if quantity:
                self.restock_sku(sku, quantity, ADMIN)

    @rule(name=st.text(min_size=1, max_size=20))
    def register(self, name: str) -> None:
        email = f"shopper-{next(self._emails)}@example.com"
        user = self.run(
            self.bus.send(RegisterUser(email=email, password="marmalade-sky-42", name=name))
        )
        self.customers.append(Principal(subject=user.id, roles=tuple(user.roles)))

    @rule(
        sku=st.sampled_from(SKUS),
        price=st.integers(0, 5_000),
        operator=OPERATORS,
    )
    def add_product(self, sku: str, price: int, operator: Principal) -> None:
        command = AddProduct(sku=sku, name=f"The {sku.lower()}", price_cents=price)
        if sku in self.products:
            with pytest.raises(Conflict) as duplicate:
                self.run(self.bus.send(command, principal=operator))
            assert duplicate.value.code == DUPLICATE_SKU
        else:
            self.run(self.bus.send(command, principal=operator))
            self.products.add(sku)

    @precondition(lambda self: self.products)
    @rule(data=st.data(), quantity=st.integers(1, 12), operator=OPERATORS)
    def restock(self, data: st.DataObject, quantity: int, operator: Principal) -> None:
        sku = data.draw(st.sampled_from(sorted(self.products)), label="sku")
        self.restock_sku(sku, quantity, operator)

    def restock_sku(self, sku: str, quantity: int, operator: Principal) -> None:
        self.run(self.bus.send(Restock(sku=sku, quantity=quantity), principal=operator))
        self.restocked[sku] += quantity

    @rule(data=st.data(), token=TOKENS)
    def place_order(self, data: st.DataObject, token: str) -> None:
        self.place(data, token)

    @rule(data=st.data(), tokens=st.lists(TOKENS, min_size=2, max_size=4))
    def place_orders(self, data: st.DataObject, tokens: list[str]) -> None:
        # One after the other, without waiting: the sagas of the first run meanwhile.
        for token in tokens:
            self.place(data, token)

    def place(self, data: st.DataObject, token: str) -> None:
        customer = data.draw(st.sampled_from(self.customers), label="customer")
        lines = data.draw(
            st.lists(
                st.tuples(st.sampled_from(sorted(self.products)), st.integers(1, 4)),
                min_size=1,
                max_size=3,
            ),
            label="lines",
        )
        order: OrderView = self.run(
            self.bus.send(
                PlaceOrder(
                    lines=[OrderLineRequest(sku=sku, quantity=q) for sku, q in lines],
                    payment_token=token,
                ),
                principal=customer,
            )
        )
        assert order.status == "PENDING"
        wanted: Counter[str] = Counter()
        for sku, quantity in lines:
            wanted[sku] += quantity
        self.orders[order.id] = wanted

    @rule()
    def settle(self) -> None:
        assert self.run(self.runtime.settle()), "the shop did not settle"

    # -- invariants -------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        return {
            order_id: self.run(self.bus.ask(GetOrder(order_id=order_id), principal=SYSTEM)).status
            for order_id in self.orders
        }

    def stock(self) -> dict[str, Any]:
        return {sku: self.run(self.bus.ask(GetStock(sku=sku))) for sku in self.products}

    def charges(self) -> dict[str, list[dict[str, Any]]]:
        by_order: dict[str, list[dict[str, Any]]] = {}
        for charge in self.payments.charges():
            by_order.setdefault(charge["reference"], []).append(charge)
        return by_order

    def bought(self, statuses: dict[str, str], counted: set[str]) -> Counter[str]:
        total: Counter[str] = Counter()
        for order_id, status in statuses.items():
            if status in counted:
                total += self.orders[order_id]
        return total

    @invariant()
    def stock_and_money_are_accounted_for(self) -> None:
        # Orders only move from PENDING to a terminal status, and stock and money move with
        # them: read the orders before and after the stock and the provider's charges, and
        # those must sit between the two readings.
        before = self.statuses()
        levels = self.stock()
        charges = self.charges()
        after = self.statuses()

        sold_surely = self.bought(before, {"CONFIRMED"})
        sold_at_most = self.bought(after, {"CONFIRMED", "PENDING"})
        held_at_most = self.bought(before, {"PENDING"})
        for sku, level in levels.items():
            assert min(level.on_hand, level.reserved, level.available) >= 0, level
            assert level.on_hand == level.available + level.reserved, level
            assert (
                self.restocked[sku] - sold_at_most[sku]
                <= level.on_hand
                <= self.restocked[sku] - sold_surely[sku]
            ), (level, self.restocked[sku], sold_surely[sku], sold_at_most[sku])
            assert level.reserved <= held_at_most[sku], (level, held_at_most[sku])

        assert set(charges) - self._earlier <= set(self.orders)
        for order_id, status in before.items():
            found = charges.get(order_id, [])
            assert len(found) <= 1, found  # one charge per order, however often asked
            captured = [charge for charge in found if charge["status"] == "captured"]
            if status == "CONFIRMED":
                assert captured, (order_id, found)
            elif status != "PENDING":
                assert not captured, (order_id, status, found)

    def everything_settled(self) -> None:
        statuses = self.statuses()
        assert set(statuses.values()) <= TERMINAL, statuses
        charged = {
            order_id
            for order_id, found in self.charges().items()
            if order_id not in self._earlier
            and any(charge["status"] == "captured" for charge in found)
        }
        confirmed = {order_id for order_id, status in statuses.items() if status == "CONFIRMED"}
        assert confirmed == charged
        sold = self.bought(statuses, {"CONFIRMED"})
        for sku, level in self.stock().items():
            assert (level.on_hand, level.reserved) == (self.restocked[sku] - sold[sku], 0)


@pytest.fixture
def payments(driver: SyncDriver) -> Iterator[Payments]:
    with sandbox_payments(TEST_SETTINGS, slow_seconds=1.0) as started:
        yield started
        driver.run(started.provider.close())


@pytest.mark.slow
def test_the_shop_keeps_its_invariants_in_any_interleaving(
    driver: SyncDriver, transport: TransportName, tmp_path: Path, payments: Payments
) -> None:
    examples = itertools.count()

    def machine() -> ShopMachine:
        url = f"sqlite+aiosqlite:///{tmp_path / f'shop-{next(examples)}.db'}"
        return ShopMachine(driver, transport, url, payments)

    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=4, stateful_step_count=12, deadline=None),
    )

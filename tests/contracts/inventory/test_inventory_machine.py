"""Inventory, driven through the bus and compared with a model of stock and reservations.

At every step, for every SKU: on_hand = available + reserved and nothing is negative.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, invariant, rule, run_state_machine_as_test

from kernel import SYSTEM, Forbidden, NotFound, Principal
from modules.catalog.contracts import AddProduct
from modules.catalog.module import module as catalog
from modules.inventory.contracts import (
    GetStock,
    ReleaseStock,
    ReserveStock,
    Restock,
    SellStock,
    StockLine,
)
from modules.inventory.module import module as inventory
from tests.support.harness import SyncDriver
from tests.support.machines import ShopMachine, machine_for

SKUS = st.sampled_from(["TEA", "COFFEE", "COCOA", "MATE"])
CUSTOMER = Principal(subject="someone", roles=("customer",))


class InventoryMachine(ShopMachine):
    modules = [catalog, inventory]
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.on_hand: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        # order id -> (status, lines): RESERVED holds stock, SOLD sold it, NONE holds nothing
        self.reservations: dict[str, tuple[str, dict[str, int]]] = {}
        self.sequence = 0

    @rule(sku=SKUS)
    def add_product(self, sku: str) -> None:
        if sku in self.on_hand:
            return
        self.run(self.bus.send(AddProduct(sku=sku, name=sku, price_cents=100), principal=SYSTEM))
        self.settle()  # ProductAdded reaches inventory after the catalog's commit
        self.on_hand[sku] = 0
        self.reserved[sku] = 0
        level = self.run(self.bus.ask(GetStock(sku=sku)))
        assert (level.on_hand, level.reserved) == (0, 0)

    @rule(sku=SKUS, quantity=st.integers(min_value=1, max_value=20))
    def restock(self, sku: str, quantity: int) -> None:
        command = Restock(sku=sku, quantity=quantity)
        with pytest.raises(Forbidden):
            self.run(self.bus.send(command, principal=CUSTOMER))
        if sku not in self.on_hand:
            with pytest.raises(NotFound):
                self.run(self.bus.send(command, principal=SYSTEM))
            return
        level = self.run(self.bus.send(command, principal=SYSTEM))
        self.on_hand[sku] += quantity
        assert level.on_hand == self.on_hand[sku]

    @rule(
        target=orders,
        lines=st.lists(
            st.tuples(SKUS, st.integers(min_value=1, max_value=8)), min_size=1, max_size=3
        ),
    )
    def reserve(self, lines: list[tuple[str, int]]) -> str:
        self.sequence += 1
        order_id = f"order-{self.sequence}"
        wanted: dict[str, int] = {}
        for sku, quantity in lines:
            wanted[sku] = wanted.get(sku, 0) + quantity
        command = ReserveStock(
            order_id=order_id, lines=[StockLine(sku=sku, quantity=q) for sku, q in lines]
        )
        self.run(self.bus.send(command, principal=SYSTEM))
        fits = all(
            sku in self.on_hand and quantity <= self.on_hand[sku] - self.reserved[sku]
            for sku, quantity in wanted.items()
        )
        if fits:
            for sku, quantity in wanted.items():
                self.reserved[sku] += quantity
            self.reservations[order_id] = ("RESERVED", wanted)
        else:
            self.reservations[order_id] = ("NONE", {})
        return order_id

    @rule(order_id=orders)
    def reserve_again_changes_nothing(self, order_id: str) -> None:
        _, held = self.reservations[order_id]
        lines = [StockLine(sku=sku, quantity=q) for sku, q in (held or {"TEA": 1}).items()]
        self.run(self.bus.send(ReserveStock(order_id=order_id, lines=lines), principal=SYSTEM))

    @rule(order_id=orders)
    def release(self, order_id: str) -> None:
        self.run(self.bus.send(ReleaseStock(order_id=order_id), principal=SYSTEM))
        status, held = self.reservations[order_id]
        if status == "RESERVED":
            for sku, quantity in held.items():
                self.reserved[sku] -= quantity
            self.reservations[order_id] = ("NONE", {})

    @rule(order_id=orders)
    def sell(self, order_id: str) -> None:
        status, held = self.reservations[order_id]
        if status == "NONE":
            with pytest.raises(NotFound):
                self.run(self.bus.send(SellStock(order_id=order_id), principal=SYSTEM))
            return
        self.run(self.bus.send(SellStock(order_id=order_id), principal=SYSTEM))
        if status == "RESERVED":
            for sku, quantity in held.items():
                self.reserved[sku] -= quantity
                self.on_hand[sku] -= quantity
            self.reservations[order_id] = ("SOLD", held)  # selling again changes nothing

    @invariant()
    def stock_matches_the_model_and_never_goes_negative(self) -> None:
        for sku in self.on_hand:
            level = self.run(self.bus.ask(GetStock(sku=sku)))
            assert level.on_hand == level.available + level.reserved
            assert level.available >= 0 and level.reserved >= 0
            assert (level.on_hand, level.reserved) == (self.on_hand[sku], self.reserved[sku])


def test_inventory_behaves_like_its_model(driver: SyncDriver, transport: str) -> None:
    run_state_machine_as_test(
        lambda: machine_for(InventoryMachine, driver, transport)(),
        settings=settings(
            max_examples=12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

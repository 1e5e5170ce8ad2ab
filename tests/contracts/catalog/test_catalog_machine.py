"""The catalog, driven through the bus and compared with a dictionary."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from kernel import SYSTEM, Conflict, Forbidden, NotFound, Principal
from modules.catalog.contracts import (
    AddProduct,
    GetProduct,
    GetProducts,
    ListProducts,
    Product,
    UpdateProduct,
)
from modules.catalog.module import module as catalog
from tests.support.harness import SyncDriver
from tests.support.machines import ShopMachine, machine_for

SKUS = st.sampled_from([f"SKU-{index}" for index in range(6)])
PRICES = st.integers(min_value=0, max_value=100_000)
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
CUSTOMER = Principal(subject="someone", roles=("customer",))


class CatalogMachine(ShopMachine):
    modules = [catalog]

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Product] = {}

    @rule(sku=SKUS, name=NAMES, price=PRICES)
    def add_product(self, sku: str, name: str, price: int) -> None:
        command = AddProduct(sku=sku, name=name, price_cents=price)
        if sku in self.model:
            with pytest.raises(Conflict):
                self.run(self.bus.send(command, principal=SYSTEM))
            return
        added = self.run(self.bus.send(command, principal=SYSTEM))
        assert added == Product(sku=sku, name=name, price_cents=price, currency="EUR")
        self.model[sku] = added

    @rule(sku=SKUS, name=st.none() | NAMES, price=st.none() | PRICES)
    def update_product(self, sku: str, name: str | None, price: int | None) -> None:
        command = UpdateProduct(sku=sku, name=name, price_cents=price)
        if sku not in self.model:
            with pytest.raises(NotFound):
                self.run(self.bus.send(command, principal=SYSTEM))
            return
        before = self.model[sku]
        updated = self.run(self.bus.send(command, principal=SYSTEM))
        assert updated.name == (before.name if name is None else name)
        assert updated.price_cents == (before.price_cents if price is None else price)
        self.model[sku] = updated

    @rule(sku=SKUS, price=PRICES)
    def only_admins_change_the_catalog(self, sku: str, price: int) -> None:
        with pytest.raises(Forbidden):
            self.run(
                self.bus.send(AddProduct(sku=sku, name="x", price_cents=price), principal=CUSTOMER)
            )
        with pytest.raises(Forbidden):
            self.run(self.bus.send(UpdateProduct(sku=sku, price_cents=price)))

    @rule(sku=SKUS)
    def get_product(self, sku: str) -> None:
        if sku in self.model:
            assert self.run(self.bus.ask(GetProduct(sku=sku))) == self.model[sku]
        else:
            with pytest.raises(NotFound):
                self.run(self.bus.ask(GetProduct(sku=sku)))

    @rule(skus=st.lists(SKUS, max_size=8))
    def get_products(self, skus: list[str]) -> None:
        found = self.run(self.bus.ask(GetProducts(skus=skus)))
        assert found == [self.model[sku] for sku in sorted(set(skus)) if sku in self.model]

    @invariant()
    def listing_pages_through_exactly_the_added_products(self) -> None:
        listed: list[Product] = []
        after = None
        while True:
            page = self.run(self.bus.ask(ListProducts(limit=2, after=after)))
            listed.extend(page)
            if len(page) < 2:
                break
            after = page[-1].sku
        assert listed == [self.model[sku] for sku in sorted(self.model)]


def test_catalog_behaves_like_its_model(driver: SyncDriver, transport: str) -> None:
    run_state_machine_as_test(
        lambda: machine_for(CatalogMachine, driver, transport)(),
        settings=settings(
            max_examples=12,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

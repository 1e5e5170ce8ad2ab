"""A transport must not change a result: one generated workload, every transport of one
process (``TRANSPORTS``: in-process, loopback codec, HTTP), same answers.

Each transport gets its own fresh catalog and inventory; the workload's answers (results, or
the type, code and field of each error) and the final state after every reaction has settled
must be equal. It drives those two modules' commands directly, including inventory's
reservations without an order. The whole shop (identity, catalog, inventory, ordering,
payments, notifications) is compared across deployments, each topology in real processes
and Redis among them, by ``test_deployments.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel import SYSTEM, Bus, CleaveError
from modules.catalog.contracts import AddProduct, GetProduct, ListProducts, UpdateProduct
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
from tests.conftest import TRANSPORTS
from tests.support.harness import SyncDriver, running_shop

SKUS = ["A-1", "B-2", "C-3"]
sku = st.sampled_from(SKUS)
order = st.integers(min_value=1, max_value=4).map(lambda number: f"order-{number}")
operation = st.one_of(
    st.tuples(st.just("add"), sku, st.integers(min_value=0, max_value=999)),
    st.tuples(st.just("update"), sku, st.integers(min_value=0, max_value=999)),
    st.tuples(st.just("restock"), sku, st.integers(min_value=1, max_value=9)),
    st.tuples(
        st.just("reserve"),
        order,
        st.lists(st.tuples(sku, st.integers(min_value=1, max_value=5)), min_size=1, max_size=2),
    ),
    st.tuples(st.just("release"), order),
    st.tuples(st.just("sell"), order),
    st.tuples(st.just("stock"), sku),
    st.tuples(st.just("product"), sku),
    st.tuples(st.just("settle")),
)


async def apply(bus: Bus, step: tuple[Any, ...], settle: Any) -> Any:
    kind = step[0]
    if kind == "add":
        return await bus.send(
            AddProduct(sku=step[1], name=step[1], price_cents=step[2]), principal=SYSTEM
        )
    if kind == "update":
        return await bus.send(UpdateProduct(sku=step[1], price_cents=step[2]), principal=SYSTEM)
    if kind == "restock":
        return await bus.send(Restock(sku=step[1], quantity=step[2]), principal=SYSTEM)
    if kind == "reserve":
        lines = [StockLine(sku=name, quantity=quantity) for name, quantity in step[2]]
        return await bus.send(ReserveStock(order_id=step[1], lines=lines), principal=SYSTEM)
    if kind == "release":
        return await bus.send(ReleaseStock(order_id=step[1]), principal=SYSTEM)
    if kind == "sell":
        return await bus.send(SellStock(order_id=step[1]), principal=SYSTEM)
    if kind == "stock":
        return await bus.ask(GetStock(sku=step[1]))
    if kind == "product":
        return await bus.ask(GetProduct(sku=step[1]))
    return await settle()


def observed(outcome: Any) -> Any:
    if isinstance(outcome, CleaveError):
        return ("error", type(outcome).__name__, outcome.code, outcome.field)
    return ("ok", msgspec.to_builtins(outcome))


async def play(transport: str, workload: list[tuple[Any, ...]], url: str) -> list[Any]:
    observations: list[Any] = []
    async with running_shop(url, transport=transport, modules=[catalog, inventory]) as runtime:  # type: ignore[arg-type]

        async def settle() -> bool:
            return await runtime.settle(30)

        for step in workload:
            try:
                outcome = await apply(runtime.bus, step, settle)
            except CleaveError as error:
                outcome = error
            observations.append(observed(outcome))
        assert await runtime.settle(30)
        observations.append(observed(await runtime.bus.ask(ListProducts())))
        for name in SKUS:
            try:
                observations.append(observed(await runtime.bus.ask(GetStock(sku=name))))
            except CleaveError as error:
                observations.append(observed(error))
    return observations


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(workload=st.lists(operation, min_size=1, max_size=25))
def test_every_transport_gives_the_same_results(
    driver: SyncDriver, workload: list[tuple[Any, ...]]
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="cleave-topology-"))
    try:
        results = {
            transport: driver.run(
                play(transport, workload, f"sqlite+aiosqlite:///{directory / transport}.db")
            )
            for transport in TRANSPORTS
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    reference = results[TRANSPORTS[0]]
    for transport, observations in results.items():
        assert observations == reference, f"{transport} differs from {TRANSPORTS[0]}"

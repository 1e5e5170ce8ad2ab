"""Faults at random points, and the shop still settles every order exactly once.

Hypothesis draws a workload of orders and a fault plan: deliveries that fail before their
handler runs, deliveries that fail *after* their handler committed (the crash between a
commit and the relay's acknowledgement), and crashes of the whole runtime (everything in
flight cancelled, a new runtime started on the same database). Then the faults stop and the
shop settles. Whatever happened:

* every order is terminal;
* the confirmed orders are exactly the orders with one captured charge at the provider, and
  no order was charged twice;
* no stock is reserved and what left the shelves is what the confirmed orders bought;
* nothing went to the dead letters (every failure here is transient).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.dead_letters import DeadLetters
from entrypoints.bootstrap import bootstrap, create_tables, shop_modules
from kernel import SYSTEM, Principal
from kernel.bus import Transport
from kernel.runtime import Runtime
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import GetStock, Restock
from modules.ordering.contracts import ListOrders, OrderLineRequest, PlaceOrder
from tests.support.faults import FaultPlan, FaultyTransport
from tests.support.harness import TEST_SETTINGS, LocalTransport, SyncDriver

pytestmark = pytest.mark.slow

SETTINGS = msgspec.structs.replace(TEST_SETTINGS, delivery_attempts=60)
STOCK = {"TEA": 12, "POT": 6, "CUP": 9}
CUSTOMERS = [Principal(subject=f"customer-{n}", roles=("customer",)) for n in range(3)]
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}

order_step = st.tuples(
    st.just("order"),
    st.integers(min_value=0, max_value=len(CUSTOMERS) - 1),
    st.lists(
        st.tuples(st.sampled_from(sorted(STOCK)), st.integers(min_value=1, max_value=4)),
        min_size=1,
        max_size=2,
    ),
    st.sampled_from(["tok_ok"] * 5 + ["tok_declined", "tok_error"]),
)
step = order_step | st.just(("crash",)) | st.just(("settle",))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=1.0) as provider:
        yield provider


class FaultyShop:
    """A shop whose runtime can crash and come back on the same database."""

    def __init__(self, url: str, transport: str, plan: FaultPlan, provider_url: str) -> None:
        self.database = Database(url)
        self.transport = transport
        self.plan = plan
        self.provider_url = provider_url
        self.runtime: Runtime | None = None
        self.provider: HttpPaymentProvider | None = None
        self.local: LocalTransport | None = None
        self.crashes = 0

    async def start(self) -> Runtime:
        self.provider = HttpPaymentProvider.from_settings(self.provider_url, SETTINGS)

        def faulty(inner: Transport) -> Transport:
            return FaultyTransport(inner, self.plan)

        self.local = LocalTransport(self.transport, SETTINGS)  # type: ignore[arg-type]
        self.runtime = bootstrap(
            database=self.database,
            transport=self.local.transport,
            payment_provider=self.provider,
            settings=SETTINGS,
            wrap_transport=faulty,
        )
        await self.local.serve(self.runtime)
        await self.runtime.start()
        return self.runtime

    async def crash(self) -> Runtime:
        """Everything in flight is cancelled (its transaction rolled back); a new runtime
        starts on the same database, as after a restart."""
        self.crashes += 1
        await self.stop(grace=0)
        return await self.start()

    async def stop(self, grace: float) -> None:
        if self.runtime is not None:
            await self.runtime.stop(grace=grace)
        if self.local is not None:
            await self.local.close()
        if self.provider is not None:
            await self.provider.close()


@contextlib.asynccontextmanager
async def faulty_shop(
    url: str, transport: str, plan: FaultPlan, provider_url: str
) -> AsyncIterator[FaultyShop]:
    shop = FaultyShop(url, transport, plan, provider_url)
    await create_tables(shop.database)
    await shop.start()
    try:
        yield shop
    finally:
        await shop.stop(grace=5)
        await shop.database.dispose()


async def scenario(
    url: str, transport: str, plan: FaultPlan, provider_url: str, steps: list[Any]
) -> None:
    async with faulty_shop(url, transport, plan, provider_url) as shop:
        assert shop.runtime is not None
        bus = shop.runtime.bus
        for sku, quantity in STOCK.items():
            await bus.send(AddProduct(sku=sku, name=sku, price_cents=250), principal=SYSTEM)
            await bus.send(Restock(sku=sku, quantity=quantity), principal=SYSTEM)
        for current in steps:
            if current[0] == "order":
                _, customer, lines, token = current
                command = PlaceOrder(
                    lines=[OrderLineRequest(sku=sku, quantity=q) for sku, q in lines],
                    payment_token=token,
                )
                await bus.send(command, principal=CUSTOMERS[customer])
            elif current[0] == "crash":
                bus = (await shop.crash()).bus
            else:
                await shop.runtime.settle(10)

        plan.enabled = False
        assert shop.runtime is not None
        assert await shop.runtime.settle(90), "the shop did not settle once the faults stopped"
        orders = {}
        for customer in CUSTOMERS:
            for order in await bus.ask(ListOrders(limit=500), principal=customer):
                orders[order.id] = order
        stock = {sku: await bus.ask(GetStock(sku=sku)) for sku in STOCK}
        dead = await DeadLetters(shop.database, [m.name for m in shop_modules()]).list()

    async with httpx.AsyncClient(base_url=provider_url) as client:
        charges = (await client.get("/v1/charges")).json()

    assert all(order.status in TERMINAL for order in orders.values()), [
        (order.id, order.status) for order in orders.values() if order.status not in TERMINAL
    ]
    captured = Counter(c["reference"] for c in charges if c["status"] == "captured")
    for order in orders.values():
        assert captured[order.id] == (1 if order.status == "CONFIRMED" else 0), order
    sold: Counter[str] = Counter()
    for order in orders.values():
        if order.status == "CONFIRMED":
            for line in order.lines:
                sold[line.sku] += line.quantity
    for sku, initial in STOCK.items():
        assert stock[sku].reserved == 0, stock[sku]
        assert stock[sku].on_hand == initial - sold[sku], (stock[sku], sold[sku])
    assert dead == [], [(letter.ref, letter.reason) for letter in dead]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    before=st.sampled_from([0.0, 0.1, 0.3]),
    after=st.sampled_from([0.0, 0.1, 0.3]),
    steps=st.lists(step, min_size=1, max_size=12),
)
def test_faults_never_lose_or_duplicate_an_order(
    driver: SyncDriver,
    transport: str,
    sandbox: SandboxPaymentProvider,
    seed: int,
    before: float,
    after: float,
    steps: list[Any],
) -> None:
    plan = FaultPlan(seed=seed, before=before, after=after)
    directory = Path(tempfile.mkdtemp(prefix="cleave-faults-"))
    try:
        driver.run(
            scenario(
                f"sqlite+aiosqlite:///{directory / 'shop.db'}", transport, plan, sandbox.url, steps
            )
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)

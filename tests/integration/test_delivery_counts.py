"""Without faults, every delivery happens once: at-least-once must not mean "usually twice".

The inbox would hide repeated deliveries, so only counting them shows a relay that reads
records it has already delivered (it did, once, between delivering a batch and removing it).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from kernel import SYSTEM, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import ListOrders, OrderLineRequest, PlaceOrder
from tests.support.faults import FaultPlan, FaultyTransport
from tests.support.harness import TEST_SETTINGS, running_shop

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=1.0) as provider:
        yield provider


async def test_concurrent_orders_are_delivered_once_each(
    tmp_path: Path, transport: str, sandbox: SandboxPaymentProvider
) -> None:
    plan = FaultPlan(seed=0)  # no faults: only the counting
    provider = HttpPaymentProvider.from_settings(sandbox.url, TEST_SETTINGS)
    customer = Principal(subject="c", roles=("customer",))
    try:
        async with running_shop(
            f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
            transport=transport,  # type: ignore[arg-type]
            payment_provider=provider,
            wrap_transport=lambda inner: FaultyTransport(inner, plan),
        ) as runtime:
            bus = runtime.bus
            for sku in "ABC":
                await bus.send(AddProduct(sku=sku, name=sku, price_cents=100), principal=SYSTEM)
                await bus.send(Restock(sku=sku, quantity=1000), principal=SYSTEM)
            rng = random.Random(7)
            await asyncio.gather(
                *(
                    bus.send(
                        PlaceOrder(
                            lines=[OrderLineRequest(sku=rng.choice("ABC"), quantity=1)],
                            payment_token="tok_ok",
                        ),
                        principal=customer,
                    )
                    for _ in range(40)
                )
            )
            assert await runtime.settle(60)
            orders = await bus.ask(ListOrders(limit=100), principal=customer)
    finally:
        await provider.close()
    assert len(orders) == 40 and {order.status for order in orders} == {"CONFIRMED"}
    repeated = {key: count for key, count in plan.attempts.items() if count > 1}
    assert not repeated, repeated
    # each order went through every step of its saga
    per_target = Counter(target for target, _ in plan.attempts)
    assert per_target["inventory <- inventory.ReserveStock"] == 40
    assert per_target["ordering <- inventory.StockSold"] == 40

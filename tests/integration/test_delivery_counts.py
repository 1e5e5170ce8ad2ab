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
from typing import Any

import pytest

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from kernel import SYSTEM, Principal
from kernel.bus import Call, Transport
from kernel.messages import Envelope, Message
from kernel.registry import Endpoint
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import ListOrders, OrderLineRequest, PlaceOrder
from tests.support.harness import TEST_SETTINGS, running_shop

pytestmark = pytest.mark.anyio


class CountingTransport:
    def __init__(self, inner: Transport, counts: Counter[tuple[str, str]]) -> None:
        self._inner = inner
        self._counts = counts

    def requester(self, endpoint: Endpoint) -> Call:
        return self._inner.requester(endpoint)

    def deliverer(self, endpoint: Endpoint) -> Call:
        deliver = self._inner.deliverer(endpoint)

        async def counted(message: Message, envelope: Envelope) -> Any:
            self._counts[(endpoint.name, envelope.message_id)] += 1
            return await deliver(message, envelope)

        return counted


@pytest.fixture
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=1.0) as provider:
        yield provider


async def test_concurrent_orders_are_delivered_once_each(
    tmp_path: Path, transport: str, sandbox: SandboxPaymentProvider
) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    provider = HttpPaymentProvider.from_settings(sandbox.url, TEST_SETTINGS)
    customer = Principal(subject="c", roles=("customer",))
    try:
        async with running_shop(
            f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
            transport=transport,  # type: ignore[arg-type]
            payment_provider=provider,
            wrap_transport=lambda inner: CountingTransport(inner, counts),
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
    repeated = {key: count for key, count in counts.items() if count > 1}
    assert not repeated, repeated
    # each order went through every step of its saga
    per_handler = Counter(name for name, _ in counts)
    assert per_handler["inventory.reserve_stock"] == 40
    assert per_handler["ordering.on_stock_sold"] == 40

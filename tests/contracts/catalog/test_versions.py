"""The catalog's version of a product (issue 12, ADR 0018): 0 when added, one more at every
stored change and none for a change that changes nothing; ``GetProduct``/``GetProducts``
answer it, and the events carry it with when the change was made, so a reader that keeps a
copy (ordering's price cache) tells a newer copy from an older. Over every transport."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kernel import SYSTEM, Envelope, Message
from kernel.bus import Call, Transport
from modules.catalog.contracts import (
    AddProduct,
    GetProduct,
    GetProducts,
    ProductAdded,
    ProductUpdated,
    UpdateProduct,
)
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.harness import Transport as TransportName

pytestmark = pytest.mark.anyio


class Recorded:
    """The test's real transport, keeping each event it delivers."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.events: list[Message] = []

    def requester(self, module: str, message: type[Message]) -> Call:
        return self._inner.requester(module, message)

    def deliverer(self, module: str) -> Call:
        deliver = self._inner.deliverer(module)

        async def recording(message: Message, envelope: Envelope) -> Any:
            result = await deliver(message, envelope)
            if isinstance(message, ProductAdded | ProductUpdated):
                self.events.append(message)
            return result

        return recording


async def test_every_change_is_a_new_version_and_the_events_say_which(
    sqlite_url: str, transport: TransportName
) -> None:
    recorded: list[Recorded] = []

    def wrap(inner: Transport) -> Transport:
        recorded.append(Recorded(inner))
        return recorded[0]

    before = time.time()
    with sandbox_payments(TEST_SETTINGS) as payments:  # the shop needs a provider to start
        async with running_shop(
            sqlite_url,
            transport=transport,
            wrap_transport=wrap,
            payment_provider=payments.provider,
        ) as runtime:
            bus = runtime.bus
            added = await bus.send(
                AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM
            )
            cheaper = await bus.send(UpdateProduct(sku="TEA", price_cents=400), principal=SYSTEM)
            same = await bus.send(UpdateProduct(sku="TEA", price_cents=400), principal=SYSTEM)
            renamed = await bus.send(UpdateProduct(sku="TEA", name="Green tea"), principal=SYSTEM)
            one = await bus.ask(GetProduct(sku="TEA"))
            many = await bus.ask(GetProducts(skus=["TEA"]))
            assert await runtime.settle()
        await payments.provider.close()
    after = time.time()
    assert [added.version, cheaper.version, same.version, renamed.version] == [0, 1, 1, 2]
    assert one.version == many[0].version == 2
    # Ordering subscribes to both events (inventory to ProductAdded too): one of each change
    # reaches ordering, whatever reached inventory.
    updates = {
        (event.product_version, event.price_cents, event.name): event.changed_at
        for event in recorded[0].events
        if isinstance(event, ProductUpdated)
    }
    assert sorted(updates) == [(1, 400, "Tea"), (2, 400, "Green tea")]
    assert all(before <= changed_at <= after for changed_at in updates.values())
    assert {
        event.product_version for event in recorded[0].events if isinstance(event, ProductAdded)
    } == {0}

"""An order whose saga waits past its deadline is compensated, through the real bus."""

from __future__ import annotations

import msgspec
import pytest

from kernel import SYSTEM, Forbidden, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import GetStock, Restock
from modules.ordering.contracts import ExpireOrders, GetOrder, OrderLineRequest, PlaceOrder
from modules.ordering.ports import OrderingSettings
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop

CUSTOMER = Principal(subject="customer-1", roles=("customer",))
#: The provider takes 2 s for tok_slow, and payments waits for it: the saga waits longer
#: than its 0.2 s deadline, and the once-a-second timer compensates it.
SETTINGS = msgspec.structs.replace(TEST_SETTINGS, payment_timeout_seconds=5.0, payment_attempts=1)
SHORT_DEADLINE = {OrderingSettings: OrderingSettings(order_timeout_seconds=0.2)}


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_saga_past_its_deadline_releases_the_stock_and_voids_the_capture(
    sqlite_url: str, transport: str
) -> None:
    with sandbox_payments(SETTINGS, slow_seconds=2.0) as payments:
        async with running_shop(
            sqlite_url,
            transport=transport,
            settings=SETTINGS,
            payment_provider=payments.provider,
            ports=SHORT_DEADLINE,
        ) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
            await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
            placed = await bus.send(
                PlaceOrder(
                    lines=[OrderLineRequest(sku="TEA", quantity=2)], payment_token="tok_slow"
                ),
                principal=CUSTOMER,
            )
            assert placed.status == "PENDING"
            assert await runtime.settle()
            order = await bus.ask(GetOrder(order_id=placed.id), principal=CUSTOMER)
            stock = await bus.ask(GetStock(sku="TEA"))
            # Nothing is left to expire.
            assert await bus.send(ExpireOrders(), principal=SYSTEM) == 0
        await payments.provider.close()
        charges = payments.charges(placed.id)

    assert (order.status, order.reason) == ("CANCELLED", "timeout")
    assert (stock.on_hand, stock.reserved) == (5, 0)
    # The capture was in flight when the saga gave up: the provider voided it (or, if the
    # timer fired before the stock was reserved, it was never asked for).
    assert [charge["status"] for charge in charges] in ([], ["voided"]), charges


@pytest.mark.anyio
async def test_only_the_system_or_an_admin_expires_orders(sqlite_url: str, transport: str) -> None:
    with sandbox_payments(TEST_SETTINGS) as payments:
        async with running_shop(
            sqlite_url, transport=transport, payment_provider=payments.provider
        ) as runtime:
            with pytest.raises(Forbidden):
                await runtime.bus.send(ExpireOrders(), principal=CUSTOMER)
            with pytest.raises(Forbidden):
                await runtime.bus.send(ExpireOrders())
            admin = Principal(subject="admin", roles=("admin",))
            assert await runtime.bus.send(ExpireOrders(), principal=admin) == 0
        await payments.provider.close()

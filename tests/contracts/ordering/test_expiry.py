"""An order whose saga waits past its deadline is compensated, through the real bus."""

from __future__ import annotations

import time

import msgspec
import pytest

from kernel import SYSTEM, Forbidden, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import GetStock, Restock
from modules.ordering.contracts import ExpireOrders, GetOrder, OrderLineRequest, PlaceOrder
from modules.ordering.settings import OrderingSettings
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, Transport, running_shop

CUSTOMER = Principal(subject="customer-1", roles=("customer",))
#: The provider takes 2 s for tok_slow, and payments waits for it: the capture is still in
#: flight when the test moves the clock past the saga's deadline.
SETTINGS = msgspec.structs.replace(TEST_SETTINGS, payment_timeout_seconds=5.0, payment_attempts=1)
TIMEOUT = OrderingSettings(order_timeout_seconds=30.0)


class ShiftedClock:
    """The wall clock, moved forward at will: the saga's deadline passes when the test says."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_saga_past_its_deadline_releases_the_stock_and_voids_the_capture(
    sqlite_url: str, transport: Transport
) -> None:
    clock = ShiftedClock()
    with sandbox_payments(SETTINGS, slow_seconds=2.0) as payments:
        async with running_shop(
            sqlite_url,
            transport=transport,
            settings=SETTINGS,
            payment_provider=payments.provider,
            ports={OrderingSettings: TIMEOUT},
            clock=clock,
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
            # The stock is reserved and the capture is at the provider: the saga awaits the
            # payment when its deadline passes, and the once-a-second timer expires it.
            await payments.capture_requested()
            clock.offset = TIMEOUT.order_timeout_seconds + 1
            order = await bus.ask(GetOrder(order_id=placed.id, wait_seconds=20), principal=CUSTOMER)
            assert await runtime.settle()
            stock = await bus.ask(GetStock(sku="TEA"))
            # Nothing is left to expire.
            assert await bus.send(ExpireOrders(), principal=SYSTEM) == 0
        await payments.provider.close()
        charges = payments.charges(placed.id)

    assert (order.status, order.reason) == ("CANCELLED", "timeout")
    assert (stock.on_hand, stock.reserved) == (5, 0)
    # The capture was in flight when the saga gave up: the provider voided it, whether the
    # void reached it before the capture ended or after.
    assert [charge["status"] for charge in charges] == ["voided"], charges


@pytest.mark.anyio
async def test_only_the_system_or_an_admin_expires_orders(
    sqlite_url: str, transport: Transport
) -> None:
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

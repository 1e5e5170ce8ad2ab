"""More customers than database connections on PostgreSQL: every order still goes through.

A unit of work holds its connection from its first statement to its commit. One that asked
another module synchronously while holding it would need a second connection, and a pool
filled by such units, each waiting for a second one, would wait until the pool's timeout and
fail every order with a 503: what a cold price cache did to ``PlaceOrder`` at start-up under
load (found by ``bench.profile saga`` on PostgreSQL, issue 12).
"""

from __future__ import annotations

import asyncio

import pytest

from kernel import SYSTEM, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import GetOrder, OrderLineRequest, PlaceOrder
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.services import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

CUSTOMERS = 6


async def test_orders_placed_together_on_a_cold_price_cache_need_one_connection_each() -> None:
    with sandbox_payments(TEST_SETTINGS) as payments:
        # At most two connections (one kept, one for bursts).
        async with running_shop(
            require_postgres(), pool_size=2, payment_provider=payments.provider
        ) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
            await bus.send(Restock(sku="TEA", quantity=100), principal=SYSTEM)
            customers = [
                Principal(subject=f"customer-{n}", roles=("customer",)) for n in range(CUSTOMERS)
            ]
            # Nothing has priced TEA yet: every order asks the catalog, all at once.
            placed = await asyncio.gather(
                *(
                    bus.send(
                        PlaceOrder(
                            lines=[OrderLineRequest(sku="TEA", quantity=1)],
                            payment_token="tok_ok",
                        ),
                        principal=customer,
                    )
                    for customer in customers
                )
            )
            settled = [
                await bus.ask(GetOrder(order_id=order.id, wait_seconds=20), principal=customer)
                for order, customer in zip(placed, customers, strict=True)
            ]
        await payments.provider.close()
    assert [order.status for order in settled] == ["CONFIRMED"] * CUSTOMERS

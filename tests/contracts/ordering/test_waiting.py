"""A client waits for its order to settle instead of polling: ``GetOrder`` with
``wait_seconds`` (``GET /api/v1/orders/{id}?wait=SECONDS``) answers as soon as the order is
terminal, or the PENDING order when the wait ends; over every transport of the kit."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from kernel import SYSTEM, Bus, NotFound, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import GetOrder, OrderLineRequest, OrderView, PlaceOrder
from modules.ordering.domain import Order, OrderStatus
from modules.ordering.repository import Orders
from modules.ordering.settings import OrderingSettings
from tests.contracts.shop.sandbox import sandbox_payments
from tests.integration.test_http_orders import ADMIN_EMAIL, ADMIN_PASSWORD, running
from tests.support.harness import TEST_SETTINGS, running_shop

CUSTOMER = Principal(subject="customer-1", roles=("customer",))
STRANGER = Principal(subject="customer-2", roles=("customer",))
#: Longer than any wait here: an early answer can only come from the settlement waking the
#: waiter, not from the periodic look at the database.
NO_RECHECK = {OrderingSettings: OrderingSettings(wait_recheck_seconds=60.0)}
#: The sandbox answers tok_slow after 3 s and payments waits that long: the order stays
#: PENDING for the whole of a 1 s wait.
PATIENT_PAYMENTS = msgspec.structs.replace(
    TEST_SETTINGS, payment_timeout_seconds=5.0, payment_attempts=1
)


async def _place(bus: Bus, token: str) -> OrderView:
    await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
    await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
    order: OrderView = await bus.send(
        PlaceOrder(lines=[OrderLineRequest(sku="TEA", quantity=1)], payment_token=token),
        principal=CUSTOMER,
    )
    return order


async def _wait(
    bus: Bus, order_id: str, seconds: float, principal: Principal = CUSTOMER
) -> OrderView:
    # As the REST route does: the call's deadline lies past the wait.
    order: OrderView = await bus.ask(
        GetOrder(order_id=order_id, wait_seconds=seconds),
        principal=principal,
        deadline=time.time() + seconds + 5,
    )
    return order


@pytest.mark.anyio
async def test_a_wait_answers_as_soon_as_the_order_settles(sqlite_url: str, transport: str) -> None:
    # tok_slow outlasts the adapter's 0.5 s timeout twice: the order is cancelled after
    # about a second of PENDING.
    with sandbox_payments(TEST_SETTINGS, slow_seconds=3.0) as payments:
        async with running_shop(
            sqlite_url,
            transport=transport,
            payment_provider=payments.provider,
            ports=NO_RECHECK,
        ) as runtime:
            placed = await _place(runtime.bus, "tok_slow")
            before = await runtime.bus.ask(GetOrder(order_id=placed.id), principal=CUSTOMER)
            wait = 20.0
            began = time.monotonic()
            order = await _wait(runtime.bus, placed.id, wait)
            waited = time.monotonic() - began
        await payments.provider.close()

    assert before.status == "PENDING"
    assert (order.status, order.reason) == ("CANCELLED", "payment_failed")
    assert waited < wait


@pytest.mark.anyio
async def test_a_wait_on_an_order_that_does_not_settle_answers_it_pending_when_the_wait_ends(
    sqlite_url: str, transport: str
) -> None:
    with sandbox_payments(PATIENT_PAYMENTS, slow_seconds=3.0) as payments:
        async with running_shop(
            sqlite_url,
            transport=transport,
            settings=PATIENT_PAYMENTS,
            payment_provider=payments.provider,
        ) as runtime:
            placed = await _place(runtime.bus, "tok_slow")
            began = time.monotonic()
            order = await _wait(runtime.bus, placed.id, 1.0)
            waited = time.monotonic() - began
            settled = await _wait(runtime.bus, placed.id, 20.0)
        await payments.provider.close()

    assert order.status == "PENDING"
    assert waited >= 0.99  # the wait ran its course (asyncio's clock, not a speed limit)
    assert settled.status == "CONFIRMED"


@pytest.mark.anyio
async def test_a_wait_for_someone_elses_order_is_not_found_at_once(
    sqlite_url: str, transport: str
) -> None:
    with sandbox_payments(PATIENT_PAYMENTS, slow_seconds=3.0) as payments:
        async with running_shop(
            sqlite_url,
            transport=transport,
            settings=PATIENT_PAYMENTS,
            payment_provider=payments.provider,
        ) as runtime:
            placed = await _place(runtime.bus, "tok_slow")
            with pytest.raises(NotFound):
                await _wait(runtime.bus, placed.id, 20.0, principal=STRANGER)
            with pytest.raises(NotFound):
                await _wait(runtime.bus, "no-such-order", 20.0)
        await payments.provider.close()


@pytest.mark.anyio
async def test_the_rest_route_waits_and_refuses_a_wait_past_thirty_seconds(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as shop:
        admin = await shop.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        product = {"sku": "TEA", "name": "Tea", "price_cents": 450, "currency": "EUR"}
        assert (await shop.call("POST", "/api/v1/catalog/products", admin, json=product)).is_success
        restock = await shop.call(
            "POST", "/api/v1/inventory/TEA/restock", admin, json={"quantity": 5}
        )
        assert restock.is_success
        _, token = await shop.customer("Ada")
        placed = await shop.order(token, [{"sku": "TEA", "quantity": 1}], "tok_ok")
        path = f"/api/v1/orders/{placed['id']}"

        waited = await shop.call("GET", path, token, params={"wait": 30})
        refused = {
            value: await shop.call("GET", path, token, params={"wait": value})
            for value in ("31", "-1", "soon")
        }

    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "CONFIRMED"
    for value, response in refused.items():
        assert response.status_code == 400, (value, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "wait" in response.text


@pytest.mark.anyio
async def test_a_woken_wait_answers_with_the_order_as_settled_without_reading_it_again(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saga hands the settled order to its waiters once it committed it: the wait's
    answer costs no second read of the order."""
    terminal_reads = 0
    get = Orders.get

    async def counted(self: Orders, order_id: str) -> Order | None:
        nonlocal terminal_reads
        order = await get(self, order_id)
        terminal_reads += order is not None and order.status is not OrderStatus.PENDING
        return order

    monkeypatch.setattr(Orders, "get", counted)
    with sandbox_payments(TEST_SETTINGS, slow_seconds=3.0) as payments:
        async with running_shop(
            sqlite_url, payment_provider=payments.provider, ports=NO_RECHECK
        ) as runtime:
            placed = await _place(runtime.bus, "tok_slow")
            order = await _wait(runtime.bus, placed.id, 20.0)
            answered_reads = terminal_reads
            again = await runtime.bus.ask(GetOrder(order_id=placed.id), principal=CUSTOMER)
        await payments.provider.close()

    assert (order.status, order.reason) == ("CANCELLED", "payment_failed")
    assert order == again  # the same answer a read gives
    assert answered_reads == 0
    assert terminal_reads == 1  # the read after it, which the spy sees

"""Ordering's public REST routes. They talk to the bus only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from kernel import Bus, Principal
from modules.catalog.contracts import Sku
from modules.ordering.contracts import (
    GetOrder,
    ListOrders,
    Order,
    OrderLineRequest,
    PlaceOrder,
    Quantity,
)
from modules.payments.contracts import PaymentToken


class NewOrderLine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity


class NewOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An order as a customer sends it (the bounds of ``PlaceOrder``)."""

    lines: Annotated[list[NewOrderLine], msgspec.Meta(min_length=1, max_length=50)]
    payment_token: PaymentToken


class OrdersController(Controller):
    path = "/api/v1/orders"
    tags = ["ordering"]

    @post(
        "",
        opt={"roles": ["customer", "admin"]},
        status_code=202,
        summary="Place an order; poll it until CONFIRMED, REJECTED or CANCELLED",
    )
    async def place_order(
        self,
        data: JSONBody[NewOrder],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Order:
        command = PlaceOrder(
            lines=[OrderLineRequest(sku=line.sku, quantity=line.quantity) for line in data.lines],
            payment_token=data.payment_token,
        )
        return await bus.send(command, principal=principal)

    @get("", summary="The caller's orders, newest first")
    async def list_orders(
        self,
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[Order]:
        return await bus.ask(ListOrders(limit=limit), principal=principal)

    @get("/{order_id:str}", summary="One order: the caller's own, or any for an admin")
    async def get_order(
        self,
        order_id: FromPath[str],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Order:
        return await bus.ask(msgspec.convert({"order_id": order_id}, GetOrder), principal=principal)


#: The public routes of ordering, served by whichever process hosts the public API.
routes = [OrdersController]

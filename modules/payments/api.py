"""Payments' public REST routes. They talk to the bus only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from kernel import Bus, Principal
from modules.payments.contracts import Charge, GetCharges, OrderId

_ORDER_ID: msgspec.Meta = OrderId.__metadata__[0]


class PaymentsController(Controller):
    path = "/api/v1/payments"
    tags = ["payments"]

    @get("/{order_id:str}", opt={"roles": ["admin"]}, summary="Charges of one order (admin)")
    async def get_charges(
        self,
        order_id: Annotated[
            str,
            PathParameter(min_length=_ORDER_ID.min_length, max_length=_ORDER_ID.max_length),
        ],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> list[Charge]:
        query = msgspec.convert({"order_id": order_id}, GetCharges)
        return await bus.ask(query, principal=principal)


#: The public routes of payments, served by whichever process hosts the public API.
routes = [PaymentsController]

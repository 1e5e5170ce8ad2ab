"""Inventory's public REST routes."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter

from kernel import Bus, Principal
from modules.catalog.contracts import Sku
from modules.inventory.contracts import MAX_ON_HAND, GetStock, Quantity, Restock, StockLevel

#: The bounds of a SKU, as the catalog's contracts set them (litestar reads only its own
#: parameter arguments, for the document and the check alike).
_SKU: msgspec.Meta = Sku.__metadata__[0]
SkuInPath = Annotated[
    str,
    PathParameter(
        min_length=_SKU.min_length,
        max_length=_SKU.max_length,
        pattern=_SKU.pattern,
        description=_SKU.description,
    ),
]
#: The body of each refusal is the edge's problem (``adapters.http.openapi``).
UNKNOWN_SKU = {404: ResponseSpec(None, description="The catalog has no product with this SKU")}


class RestockRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity


class InventoryController(Controller):
    path = "/api/v1/inventory"
    tags = ["inventory"]

    @get("/{sku:str}", exclude_from_auth=True, summary="Stock of one SKU", responses=UNKNOWN_SKU)
    async def get_stock(self, sku: SkuInPath, bus: NamedDependency[Bus]) -> StockLevel:
        return await bus.ask(msgspec.convert({"sku": sku}, GetStock))

    @post(
        "/{sku:str}/restock",
        opt={"roles": ["admin"]},
        status_code=200,
        summary="Add units on hand (admin)",
        description=f"400 naming `quantity` past {MAX_ON_HAND} units on hand in all.",
        responses=UNKNOWN_SKU,
    )
    async def restock(
        self,
        sku: SkuInPath,
        data: JSONBody[RestockRequest],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> StockLevel:
        command = msgspec.convert({"sku": sku, "quantity": data.quantity}, Restock)
        return await bus.send(command, principal=principal)


#: The public routes of inventory, served by whichever process hosts the public API.
routes = [InventoryController]

"""Inventory's public REST routes."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from kernel import Bus, Principal
from modules.inventory.contracts import GetStock, Quantity, Restock, StockLevel


class RestockRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity


class InventoryController(Controller):
    path = "/api/v1/inventory"
    tags = ["inventory"]

    @get("/{sku:str}", exclude_from_auth=True, summary="Stock of one SKU")
    async def get_stock(self, sku: FromPath[str], bus: NamedDependency[Bus]) -> StockLevel:
        return await bus.ask(msgspec.convert({"sku": sku}, GetStock))

    @post(
        "/{sku:str}/restock",
        opt={"roles": ["admin"]},
        status_code=200,
        summary="Add units on hand (admin)",
    )
    async def restock(
        self,
        sku: FromPath[str],
        data: JSONBody[RestockRequest],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> StockLevel:
        command = msgspec.convert({"sku": sku, "quantity": data.quantity}, Restock)
        return await bus.send(command, principal=principal)


#: The public routes of inventory, served by whichever process hosts the public API.
routes = [InventoryController]

"""The catalog's public REST routes. They talk to the bus only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from kernel import Bus, Principal
from modules.catalog.contracts import (
    AddProduct,
    Currency,
    Description,
    GetProduct,
    ListProducts,
    PriceCents,
    Product,
    ProductName,
    Sku,
    UpdateProduct,
)


class NewProduct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    name: ProductName
    price_cents: PriceCents
    currency: Currency = "EUR"
    description: Description = ""


class ProductChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ProductName | None = None
    price_cents: PriceCents | None = None
    description: Description | None = None


class CatalogController(Controller):
    path = "/api/v1/catalog"
    tags = ["catalog"]

    @post("/products", opt={"roles": ["admin"]}, summary="Add a product (admin)")
    async def add_product(
        self,
        data: JSONBody[NewProduct],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Product:
        return await bus.send(AddProduct(**msgspec.structs.asdict(data)), principal=principal)

    @patch("/products/{sku:str}", opt={"roles": ["admin"]}, summary="Change a product (admin)")
    async def update_product(
        self,
        sku: FromPath[str],
        data: JSONBody[ProductChanges],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Product:
        command = msgspec.convert({"sku": sku, **msgspec.structs.asdict(data)}, UpdateProduct)
        return await bus.send(command, principal=principal)

    @get("/products", exclude_from_auth=True, summary="List products in SKU order")
    async def list_products(
        self,
        bus: NamedDependency[Bus],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        after: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> list[Product]:
        return await bus.ask(ListProducts(limit=limit, after=after))

    @get("/products/{sku:str}", exclude_from_auth=True, summary="One product")
    async def get_product(self, sku: FromPath[str], bus: NamedDependency[Bus]) -> Product:
        return await bus.ask(msgspec.convert({"sku": sku}, GetProduct))


#: The public routes of catalog, served by whichever process hosts the public API.
routes = [CatalogController]

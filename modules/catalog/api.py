"""The catalog's public REST routes. They talk to the bus only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter

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

#: The bounds of a SKU, as the catalog's contracts set them: litestar reads only its own
#: parameter arguments, so they are handed over here for the document and the check alike.
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
NO_SUCH_PRODUCT = {404: ResponseSpec(None, description="No product with this SKU")}


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

    @post(
        "/products",
        opt={"roles": ["admin"]},
        summary="Add a product (admin)",
        responses={409: ResponseSpec(None, description="A product has this SKU already")},
    )
    async def add_product(
        self,
        data: JSONBody[NewProduct],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
    ) -> Product:
        return await bus.send(AddProduct(**msgspec.structs.asdict(data)), principal=principal)

    @patch(
        "/products/{sku:str}",
        opt={"roles": ["admin"]},
        summary="Change a product (admin)",
        responses=NO_SUCH_PRODUCT,
    )
    async def update_product(
        self,
        sku: SkuInPath,
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
        after: Annotated[
            str | None,
            QueryParameter(
                min_length=_SKU.min_length,
                max_length=_SKU.max_length,
                pattern=_SKU.pattern,
                description="The SKU the page starts after (the last one of the page before).",
            ),
        ] = None,
    ) -> list[Product]:
        return await bus.ask(ListProducts(limit=limit, after=after))

    @get(
        "/products/{sku:str}",
        exclude_from_auth=True,
        summary="One product",
        responses=NO_SUCH_PRODUCT,
    )
    async def get_product(self, sku: SkuInPath, bus: NamedDependency[Bus]) -> Product:
        return await bus.ask(msgspec.convert({"sku": sku}, GetProduct))


#: The public routes of catalog, served by whichever process hosts the public API.
routes = [CatalogController]

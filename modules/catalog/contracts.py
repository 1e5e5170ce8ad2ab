"""Catalog: the products the shop sells and their prices.

Other modules read products through ``GetProduct`` / ``GetProducts`` and react to
``ProductAdded`` / ``ProductUpdated``; nothing else of the catalog is visible to them.
Only an admin (or the system) may add or change a product.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from kernel import Command, Event, Query

Sku = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Stock keeping unit: letters, digits, '.', '_' or '-'.",
        examples=["TEA-001"],
    ),
]
ProductName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
PriceCents = Annotated[int, msgspec.Meta(ge=0, le=100_000_000, description="Price in cents.")]
Currency = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])
]

#: Error codes a caller may see.
PRODUCT_NOT_FOUND = "catalog.product_not_found"
DUPLICATE_SKU = "catalog.duplicate_sku"
NOT_ALLOWED = "catalog.not_allowed"


class Product(msgspec.Struct, frozen=True, kw_only=True):
    """A product as others see it."""

    sku: Sku
    name: ProductName
    price_cents: PriceCents
    currency: Currency
    description: Description = ""
    #: The catalog's version of the product: 0 when added, one more at every change. A
    #: reader that keeps a copy (ordering's price cache) tells a newer copy from an older.
    version: int = 0


# -- commands -------------------------------------------------------------------------------


class AddProduct(Command[Product], frozen=True, kw_only=True, tag="catalog.AddProduct"):
    """Add a new product. ``Conflict`` (duplicate_sku) if the SKU exists. Admins only."""

    sku: Sku
    name: ProductName
    price_cents: PriceCents
    currency: Currency = "EUR"
    description: Description = ""


class UpdateProduct(Command[Product], frozen=True, kw_only=True, tag="catalog.UpdateProduct"):
    """Change a product's name, price or description; omitted fields stay. Admins only."""

    sku: Sku
    name: ProductName | None = None
    price_cents: PriceCents | None = None
    description: Description | None = None


# -- queries --------------------------------------------------------------------------------


class GetProduct(Query[Product], frozen=True, kw_only=True, tag="catalog.GetProduct"):
    """One product; ``NotFound`` (product_not_found) if there is none."""

    sku: Sku


class GetProducts(Query[list[Product]], frozen=True, kw_only=True, tag="catalog.GetProducts"):
    """The products among ``skus`` that exist (unknown SKUs are simply absent)."""

    skus: Annotated[list[Sku], msgspec.Meta(max_length=500)]


class ListProducts(Query[list[Product]], frozen=True, kw_only=True, tag="catalog.ListProducts"):
    """Products in SKU order, ``limit`` at a time, starting after the SKU ``after``."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    after: Sku | None = None


# -- events ---------------------------------------------------------------------------------


class ProductAdded(Event, frozen=True, kw_only=True, tag="catalog.ProductAdded"):
    """A product was added to the catalog."""

    partition_key = "sku"

    sku: Sku
    name: ProductName
    price_cents: PriceCents
    currency: Currency
    #: ``Product.version`` of the new product (0). Not ``version``: that name is the
    #: message's schema version (``Message.version``).
    product_version: int = 0


class ProductUpdated(Event, frozen=True, kw_only=True, tag="catalog.ProductUpdated"):
    """A product's name, price or description changed."""

    partition_key = "sku"

    sku: Sku
    name: ProductName
    price_cents: PriceCents
    currency: Currency
    #: ``Product.version`` after this change.
    product_version: int = 0
    #: When the catalog made the change (Unix seconds, the catalog's clock; 0: not said).
    #: Ordering compares it with when an order was placed (ADR 0018).
    changed_at: float = 0.0

"""The catalog's handlers: one per command and query."""

from __future__ import annotations

from kernel import Bus, Clock, Forbidden, NotFound, Principal
from modules.catalog import domain
from modules.catalog.contracts import (
    NOT_ALLOWED,
    PRODUCT_NOT_FOUND,
    AddProduct,
    GetProduct,
    GetProducts,
    ListProducts,
    Product,
    ProductAdded,
    ProductUpdated,
    UpdateProduct,
)
from modules.catalog.repository import Products


def _require_admin(principal: Principal | None) -> None:
    if principal is None or not principal.administers:
        raise Forbidden("only an admin may change the catalog", code=NOT_ALLOWED)


async def add_product(
    command: AddProduct, products: Products, bus: Bus, principal: Principal | None
) -> Product:
    _require_admin(principal)
    product = domain.Product(
        sku=command.sku,
        name=command.name,
        price_cents=command.price_cents,
        currency=command.currency,
        description=command.description,
    )
    await products.add(product)
    await bus.publish(
        ProductAdded(
            sku=product.sku,
            name=product.name,
            price_cents=product.price_cents,
            currency=product.currency,
            product_version=product.version,
        )
    )
    return _view(product)


async def update_product(
    command: UpdateProduct,
    products: Products,
    bus: Bus,
    clock: Clock,
    principal: Principal | None,
) -> Product:
    _require_admin(principal)
    current = await products.get(command.sku)
    if current is None:
        raise NotFound(f"no product {command.sku}", code=PRODUCT_NOT_FOUND, field="sku")
    changed = current.changed(
        name=command.name, price_cents=command.price_cents, description=command.description
    )
    if changed != current:
        changed = await products.save(changed)
        await bus.publish(
            ProductUpdated(
                sku=changed.sku,
                name=changed.name,
                price_cents=changed.price_cents,
                currency=changed.currency,
                # ``save`` incremented it: every stored change is a new version.
                product_version=changed.version,
                changed_at=clock.now(),
            )
        )
    return _view(changed)


async def get_product(query: GetProduct, products: Products) -> Product:
    product = await products.get(query.sku)
    if product is None:
        raise NotFound(f"no product {query.sku}", code=PRODUCT_NOT_FOUND, field="sku")
    return _view(product)


async def get_products(query: GetProducts, products: Products) -> list[Product]:
    return [_view(product) for product in await products.get_many(query.skus)]


async def list_products(query: ListProducts, products: Products) -> list[Product]:
    return [_view(product) for product in await products.page(query.limit, query.after)]


def _view(product: domain.Product) -> Product:
    return Product(
        sku=product.sku,
        name=product.name,
        price_cents=product.price_cents,
        currency=product.currency,
        description=product.description,
        version=product.version,
    )

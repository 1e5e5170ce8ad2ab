"""Products in the catalog's tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from kernel import Conflict, Transaction, conflict_on, expect_one_row
from modules.catalog.contracts import DUPLICATE_SKU
from modules.catalog.domain import Product
from modules.catalog.tables import products

# Built once: every order asks for its products, and building a statement (and its cache
# key) cost more than running it on SQLite.
_PRODUCT = select(products).where(products.c.sku == bindparam("sku"))
_PRODUCTS = (
    select(products)
    .where(products.c.sku.in_(bindparam("skus", expanding=True)))
    .order_by(products.c.sku)
)


class Products:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, sku: str) -> Product | None:
        connection = await self._transaction.connection()
        row = (await connection.execute(_PRODUCT, {"sku": sku})).first()
        return None if row is None else _product(row)

    async def get_many(self, skus: list[str]) -> list[Product]:
        if not skus:
            return []
        connection = await self._transaction.connection()
        rows = await connection.execute(_PRODUCTS, {"skus": sorted(set(skus))})
        return [_product(row) for row in rows]

    async def page(self, limit: int, after: str | None) -> list[Product]:
        connection = await self._transaction.connection()
        query = select(products).order_by(products.c.sku).limit(limit)
        if after is not None:
            query = query.where(products.c.sku > after)
        return [_product(row) for row in await connection.execute(query)]

    async def add(self, product: Product) -> None:
        connection = await self._transaction.connection()
        # The transaction is unusable now; the Conflict ends the unit of work.
        with conflict_on(
            IntegrityError,
            Conflict(f"product {product.sku} exists", code=DUPLICATE_SKU, field="sku"),
        ):
            await connection.execute(
                insert(products).values(
                    sku=product.sku,
                    name=product.name,
                    description=product.description,
                    price_cents=product.price_cents,
                    currency=product.currency,
                    version=0,
                )
            )

    async def save(self, product: Product) -> Product:
        """Store a changed product; ``ConcurrencyConflict`` if someone changed it meanwhile."""
        connection = await self._transaction.connection()
        result = await connection.execute(
            update(products)
            .where(products.c.sku == product.sku, products.c.version == product.version)
            .values(
                name=product.name,
                description=product.description,
                price_cents=product.price_cents,
                version=product.version + 1,
            )
        )
        expect_one_row(result.rowcount, f"product {product.sku}")
        return Product(**{**product.__dict__, "version": product.version + 1})


def _product(row: Any) -> Product:
    return Product(
        sku=row.sku,
        name=row.name,
        price_cents=row.price_cents,
        currency=row.currency,
        description=row.description,
        version=row.version,
    )

"""Ordering's reactions to the catalog's events: they keep the ``PriceBook`` current (ADR
0018). Apart from ``handlers.py`` because they serve the price cache, not an order."""

from __future__ import annotations

from modules.catalog.contracts import ProductAdded, ProductUpdated
from modules.ordering.prices import PriceBook


async def on_product_added(event: ProductAdded, prices: PriceBook) -> None:
    prices.changed(event.sku, event.product_version, event.price_cents, event.currency, 0.0)


async def on_product_updated(event: ProductUpdated, prices: PriceBook) -> None:
    prices.changed(
        event.sku, event.product_version, event.price_cents, event.currency, event.changed_at
    )

"""The catalog module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module
from modules.catalog import api, contracts, handlers
from modules.catalog.repository import Products
from modules.catalog.tables import metadata


def register(container: Any) -> None:
    container.register(Products)


module = Module(
    name="catalog",
    contracts=contracts,
    handlers={
        contracts.AddProduct: handlers.add_product,
        contracts.UpdateProduct: handlers.update_product,
        contracts.GetProduct: handlers.get_product,
        contracts.GetProducts: handlers.get_products,
        contracts.ListProducts: handlers.list_products,
    },
    wiring=register,
    routes=api.routes,
    tables=metadata,
)

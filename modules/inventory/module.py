"""The inventory module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module
from modules.catalog.contracts import ProductAdded
from modules.inventory import api, contracts, handlers
from modules.inventory.repository import Reservations, StockRecords
from modules.inventory.tables import metadata


def register(container: Any) -> None:
    container.register(StockRecords)
    container.register(Reservations)


module = Module(
    name="inventory",
    contracts=contracts,
    handlers={
        contracts.Restock: handlers.restock,
        contracts.GetStock: handlers.get_stock,
        contracts.ReserveStock: handlers.reserve_stock,
        contracts.ReleaseStock: handlers.release_stock,
        contracts.SellStock: handlers.sell_stock,
    },
    subscriptions={ProductAdded: [handlers.on_product_added]},
    wiring=register,
    routes=api.routes,
    tables=metadata,
)

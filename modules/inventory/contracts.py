"""Inventory: how much of each SKU is on hand, and how much of it orders have reserved.

For every SKU, at every moment: ``on_hand = available + reserved`` and none of them is
negative. Stock reserved for an order is either sold when the order is confirmed or released
when it is cancelled. A new catalog product gets a stock record at zero.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from kernel import Command, Event, Query
from modules.catalog.contracts import GetProduct, ProductAdded, Sku

Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

#: Error codes a caller may see.
STOCK_NOT_FOUND = "inventory.stock_not_found"
NOT_ALLOWED = "inventory.not_allowed"
RESERVATION_NOT_FOUND = "inventory.reservation_not_found"
STOCK_LIMIT = "inventory.stock_limit"

#: The most units of one SKU inventory counts: the largest integer every JSON client reads
#: exactly (2**53 - 1). A restock past it is refused (``Rejected``, a 400 at the edge).
MAX_ON_HAND = 2**53 - 1


class StockLevel(msgspec.Struct, frozen=True, kw_only=True):
    """The stock of one SKU."""

    sku: Sku
    on_hand: int
    reserved: int
    available: int


class StockLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    quantity: Quantity


# -- commands -------------------------------------------------------------------------------


class Restock(Command[StockLevel], frozen=True, kw_only=True, tag="inventory.Restock"):
    """Add ``quantity`` units on hand. ``NotFound`` for a SKU the catalog does not know;
    ``Rejected`` (code ``STOCK_LIMIT``) past ``MAX_ON_HAND`` units. Admins only."""

    sku: Sku
    quantity: Quantity


class ReserveStock(Command[None], frozen=True, kw_only=True, tag="inventory.ReserveStock"):
    """Reserve every line for an order, all or nothing. Answers with ``StockReserved`` or
    ``StockReservationFailed``. Repeating it for the same order repeats the answer."""

    partition_key = "order_id"

    order_id: OrderId
    lines: Annotated[list[StockLine], msgspec.Meta(min_length=1, max_length=100)]


class ReleaseStock(Command[None], frozen=True, kw_only=True, tag="inventory.ReleaseStock"):
    """Give an order's reserved stock back (compensation). Answers with ``StockReleased``,
    also when nothing was reserved; a reservation that arrives later is then refused."""

    partition_key = "order_id"
    # A compensation: it keeps trying while the other side is down or its circuit open.
    retry_forever = True

    order_id: OrderId


class SellStock(Command[None], frozen=True, kw_only=True, tag="inventory.SellStock"):
    """Turn an order's reservation into a sale: the units leave ``on_hand``. Answers with
    ``StockSold``."""

    partition_key = "order_id"

    order_id: OrderId


# -- queries --------------------------------------------------------------------------------


class GetStock(Query[StockLevel], frozen=True, kw_only=True, tag="inventory.GetStock"):
    """The stock of one SKU; ``NotFound`` if the catalog does not know it."""

    sku: Sku


# -- events ---------------------------------------------------------------------------------


class StockReserved(Event, frozen=True, kw_only=True, tag="inventory.StockReserved"):
    partition_key = "order_id"

    order_id: OrderId


class StockReservationFailed(
    Event, frozen=True, kw_only=True, tag="inventory.StockReservationFailed"
):
    partition_key = "order_id"

    order_id: OrderId
    reason: Literal["insufficient_stock", "unknown_sku", "released"]
    sku: Sku | None = None


class StockReleased(Event, frozen=True, kw_only=True, tag="inventory.StockReleased"):
    partition_key = "order_id"

    order_id: OrderId


class StockSold(Event, frozen=True, kw_only=True, tag="inventory.StockSold"):
    partition_key = "order_id"

    order_id: OrderId


class StockRestocked(Event, frozen=True, kw_only=True, tag="inventory.StockRestocked"):
    partition_key = "sku"

    sku: Sku
    quantity: Quantity
    on_hand: int


#: The events of other modules inventory reacts to: a new product gets a stock record at zero.
SUBSCRIBES_TO = (ProductAdded,)

#: The queries of other modules inventory sends: the catalog vouches for a SKU it has no
#: stock record of yet. ``cleave graph`` draws the module map from it; a test holds it to the
#: code.
SENDS = (GetProduct,)

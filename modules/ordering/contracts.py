"""Ordering: customers' orders and the saga that settles each of them.

``PlaceOrder`` records a PENDING order at the catalog's current prices and starts its saga:
reserve stock (inventory), capture payment (payments), then sell the stock and confirm; or,
when payment is declined or fails, release the stock and cancel. An order that waits longer
than its deadline is compensated the same way. Every order ends CONFIRMED, REJECTED (not
enough stock) or CANCELLED (payment declined, failed, or timed out).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from kernel import Command, Event, Query
from modules.catalog.contracts import Currency, GetProducts, ProductAdded, ProductUpdated, Sku
from modules.inventory.contracts import (
    ReleaseStock,
    ReserveStock,
    SellStock,
    StockReleased,
    StockReservationFailed,
    StockReserved,
    StockSold,
)
from modules.payments.contracts import (
    CapturePayment,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentToken,
    PaymentVoided,
    VoidPayment,
)

OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000)]
OrderViewStatus = Literal["PENDING", "CONFIRMED", "REJECTED", "CANCELLED"]

#: Error codes a caller may see.
ORDER_NOT_FOUND = "ordering.order_not_found"
UNKNOWN_SKU = "ordering.unknown_sku"
MIXED_CURRENCIES = "ordering.mixed_currencies"
ORDER_TOO_LARGE = "ordering.order_too_large"
NOT_ALLOWED = "ordering.not_allowed"
#: The customer sent this ``idempotency_key`` before with another order (HTTP 422).
IDEMPOTENCY_KEY_REUSED = "ordering.idempotency_key_reused"
#: The customer has as many unsettled orders as one may have (HTTP 409).
TOO_MANY_OPEN_ORDERS = "ordering.too_many_open_orders"
#: The customer placed as many orders in the last minute as one may (HTTP 429).
TOO_MANY_ORDERS = "ordering.too_many_orders"

#: Why an order ended other than CONFIRMED: the start of ``OrderView.reason``, plain words for
#: programs (a stock shortage is followed by the SKU: ``"insufficient_stock: TEA"``). The
#: details (what the payment provider said) stay in the logs and the admins' views.
REASON_INSUFFICIENT_STOCK = "insufficient_stock"
REASON_UNKNOWN_SKU = "unknown_sku"
REASON_PAYMENT_DECLINED = "payment_declined"
REASON_PAYMENT_FAILED = "payment_failed"
REASON_TIMEOUT = "timeout"
#: The catalog had changed a line's price before the order was placed, and ordering priced
#: it at the old one: it is not charged, and the reason names the SKU (ADR 0018).
REASON_PRICE_CHANGED = "price_changed"

#: The longest a client may wait for its order to settle in one ``GetOrder``.
MAX_WAIT_SECONDS = 30

#: Printable ASCII, neither starting nor ending with a space (HTTP would trim it).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
#: A client's key for one order (the ``Idempotency-Key`` header): 1 to 255 printable ASCII
#: characters.
IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="A key of the client's choosing, unique per order it means to place.",
        examples=["3f0c2a4e-order-42"],
    ),
]


class OrderLineRequest(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    quantity: Quantity


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    quantity: Quantity
    unit_price_cents: int


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """An order as its customer (or an admin) sees it: what placing or reading one answers."""

    id: OrderId
    customer_id: str
    status: OrderViewStatus
    lines: list[OrderLine]
    total_cents: int
    currency: Currency
    #: Why the order was rejected or cancelled: one of the ``REASON_*`` codes, never the
    #: payment provider's own words.
    reason: str | None = None
    created_at: float


# -- commands -------------------------------------------------------------------------------


class PlaceOrder(Command[OrderView], frozen=True, kw_only=True, tag="ordering.PlaceOrder"):
    """Place an order for the principal. ``Rejected`` (unknown_sku, field
    ``lines[i].sku``) for a SKU the catalog does not know; (mixed_currencies, field
    ``lines[i].sku`` of the first line in another currency) when the products are priced in
    different currencies; (order_too_large, field ``lines``) when the total exceeds what one
    charge may be. ``Forbidden`` (not_allowed) unless the principal is a customer or an
    admin. Lines are kept as requested: a repeated SKU stays two lines.

    With an ``idempotency_key``, the same customer sending the same order again under the same
    key (a retry) gets the order placed the first time, in its current state, and nothing
    more is placed or charged; another order under a key already used is ``Conflict``
    (idempotency_key_reused). Keys are kept at least ``idempotency_key_seconds`` (a day).

    A customer may have at most ``max_open_orders`` PENDING orders (``Conflict``,
    too_many_open_orders) and place at most ``orders_per_minute`` orders a minute
    (``Conflict``, too_many_orders); a retry under a known key counts for neither."""

    lines: Annotated[list[OrderLineRequest], msgspec.Meta(min_length=1, max_length=50)]
    payment_token: PaymentToken
    idempotency_key: IdempotencyKey | None = None


class ExpireOrders(Command[int], frozen=True, kw_only=True, tag="ordering.ExpireOrders"):
    """Act on the unsettled sagas past their deadline, longest overdue first, at most
    ``expire_batch`` (100) of them: one still waiting for stock or payment is compensated, one
    still settling asks again for what it waits for. Answers how many it acted on; the rest wait
    for the next run. Sent every second by a timer in the process hosting ordering."""


class ForgetIdempotencyKeys(
    Command[int], frozen=True, kw_only=True, tag="ordering.ForgetIdempotencyKeys"
):
    """Forget about ``forget_batch`` (1,000) of the idempotency keys older than ordering keeps
    them, the oldest first; answers how many. Sent hourly by a timer in the process hosting
    ordering, so the rest go at the next runs."""


# -- queries --------------------------------------------------------------------------------


class GetOrder(Query[OrderView], frozen=True, kw_only=True, tag="ordering.GetOrder"):
    """One order. ``NotFound`` (order_not_found) unless the principal placed it or is an
    admin.

    With ``wait_seconds``, a PENDING order is answered once it settles, or as it is when the
    wait ends (or, sooner, a second before the envelope's deadline: give the call a deadline
    past the wait). No database connection is held while waiting."""

    order_id: OrderId
    wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)] = 0.0


class ListOrders(Query[list[OrderView]], frozen=True, kw_only=True, tag="ordering.ListOrders"):
    """The principal's own orders, newest first."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


# -- events ---------------------------------------------------------------------------------


class OrderPlaced(Event, frozen=True, kw_only=True, tag="ordering.OrderPlaced"):
    partition_key = "order_id"

    order_id: OrderId
    customer_id: str
    lines: list[OrderLine]
    total_cents: int
    currency: Currency


class OrderConfirmed(Event, frozen=True, kw_only=True, tag="ordering.OrderConfirmed"):
    partition_key = "order_id"

    order_id: OrderId
    customer_id: str
    total_cents: int
    currency: Currency


class OrderRejected(Event, frozen=True, kw_only=True, tag="ordering.OrderRejected"):
    partition_key = "order_id"

    order_id: OrderId
    customer_id: str
    reason: str


class OrderCancelled(Event, frozen=True, kw_only=True, tag="ordering.OrderCancelled"):
    partition_key = "order_id"

    order_id: OrderId
    customer_id: str
    reason: str


#: The events of other modules ordering reacts to: each advances the saga of one order, or
#: keeps ordering's copy of the catalog's prices current (ADR 0018).
SUBSCRIBES_TO = (
    ProductAdded,
    ProductUpdated,
    StockReserved,
    StockReservationFailed,
    StockSold,
    StockReleased,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)

#: The commands and queries of other modules ordering sends: the prices of an order, and the
#: saga's steps. ``cleave graph`` draws the module map from it; a test holds it to the code.
SENDS = (GetProducts, ReserveStock, SellStock, ReleaseStock, CapturePayment, VoidPayment)

"""The ordering module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module, Timer, Transaction
from modules.catalog.contracts import ProductAdded, ProductUpdated
from modules.inventory.contracts import (
    StockReleased,
    StockReservationFailed,
    StockReserved,
    StockSold,
)
from modules.ordering import api, contracts, handlers, price_handlers
from modules.ordering.prices import PriceBook
from modules.ordering.repository import IdempotencyKeys, Orders, Sagas
from modules.ordering.saga import SagaRunner
from modules.ordering.settings import OrderingSettings
from modules.ordering.tables import metadata
from modules.ordering.waiters import OrderWaiters
from modules.payments.contracts import (
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)


def register(container: Any) -> None:
    container.register(Orders)
    container.register(Sagas)
    container.register(IdempotencyKeys)
    # One per process: the saga wakes the very waiters GetOrder parks.
    container.register(OrderWaiters, instance=OrderWaiters(container.resolve(Transaction)))
    container.register(SagaRunner)
    if not _bound(container, OrderingSettings):
        # The composition root binds OrderingSettings from its settings; these are the defaults.
        container.register(OrderingSettings, instance=OrderingSettings())
    if not _bound(container, PriceBook):
        # One per process, like the waiters: the catalog's events fill the book orders read.
        settings = container.resolve(OrderingSettings)
        container.register(PriceBook, instance=PriceBook(settings.price_cache_seconds))


def _bound(container: Any, service: type[Any]) -> bool:
    try:
        container.resolve(service)
    except Exception:  # punq's MissingDependencyError: nothing bound it
        return False
    return True


module = Module(
    name="ordering",
    contracts=contracts,
    handlers={
        contracts.PlaceOrder: handlers.place_order,
        contracts.ExpireOrders: handlers.expire_orders,
        contracts.ForgetIdempotencyKeys: handlers.forget_idempotency_keys,
        contracts.GetOrder: handlers.get_order,
        contracts.ListOrders: handlers.list_orders,
    },
    subscriptions={
        StockReserved: [handlers.on_stock_reserved],
        StockReservationFailed: [handlers.on_stock_reservation_failed],
        StockSold: [handlers.on_stock_sold],
        StockReleased: [handlers.on_stock_released],
        PaymentCaptured: [handlers.on_payment_captured],
        PaymentDeclined: [handlers.on_payment_declined],
        PaymentFailed: [handlers.on_payment_failed],
        PaymentVoided: [handlers.on_payment_voided],
        ProductAdded: [price_handlers.on_product_added],
        ProductUpdated: [price_handlers.on_product_updated],
    },
    wiring=register,
    routes=api.routes,
    tables=metadata,
    # Sagas that wait past their deadline are compensated within about a second.
    timers=[
        Timer(every=1.0, command=contracts.ExpireOrders()),
        # Keys are kept a day or more: going through the old ones hourly is plenty.
        Timer(every=3600.0, command=contracts.ForgetIdempotencyKeys()),
    ],
)

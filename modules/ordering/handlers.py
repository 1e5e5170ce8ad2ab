"""Ordering's handlers: the commands and queries of orders, and the saga's reactions to what
inventory and payments answer."""

from __future__ import annotations

from kernel import Bus, Clock, Forbidden, NotFound, Principal, Rejected, new_entity_id
from modules.catalog.contracts import GetProducts
from modules.inventory.contracts import (
    StockReleased,
    StockReservationFailed,
    StockReserved,
    StockSold,
)
from modules.ordering import domain
from modules.ordering.contracts import (
    MIXED_CURRENCIES,
    NOT_ALLOWED,
    ORDER_NOT_FOUND,
    ORDER_TOO_LARGE,
    UNKNOWN_SKU,
    ExpireOrders,
    GetOrder,
    ListOrders,
    Order,
    OrderLine,
    OrderPlaced,
    PlaceOrder,
)
from modules.ordering.repository import Orders
from modules.ordering.saga import SagaRunner
from modules.payments.contracts import (
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)

_CODES = {
    domain.UNKNOWN_SKU: UNKNOWN_SKU,
    domain.MIXED_CURRENCIES: MIXED_CURRENCIES,
    domain.TOO_LARGE: ORDER_TOO_LARGE,
}

# -- commands -------------------------------------------------------------------------------


async def place_order(
    command: PlaceOrder, saga: SagaRunner, bus: Bus, clock: Clock, principal: Principal
) -> Order:
    if not (principal.has_role("customer") or principal.has_role("admin")):
        raise Forbidden("only a customer or an admin may place an order", code=NOT_ALLOWED)
    # Prices first, before anything is written (a synchronous call after a write would wait
    # for SQLite's writer, which this unit then holds).
    requested = [(line.sku, line.quantity) for line in command.lines]
    products = await bus.ask(GetProducts(skus=list(dict.fromkeys(sku for sku, _ in requested))))
    prices = {product.sku: (product.price_cents, product.currency) for product in products}
    try:
        lines, total, currency = domain.price_lines(requested, prices)
    except domain.PricingError as error:
        field = "lines" if error.index is None else f"lines[{error.index}].sku"
        raise Rejected(error.detail, code=_CODES[error.code], field=field) from None
    order = domain.Order(
        id=new_entity_id(),
        customer_id=principal.subject,
        lines=lines,
        total_cents=total,
        currency=currency,
        created_at=clock.now(),
    )
    await saga.start(order, command.payment_token)
    view = _view(order)
    await bus.publish(
        OrderPlaced(
            order_id=order.id,
            customer_id=order.customer_id,
            lines=view.lines,
            total_cents=order.total_cents,
            currency=order.currency,
        )
    )
    return view


async def expire_orders(
    command: ExpireOrders, saga: SagaRunner, principal: Principal | None
) -> int:
    if principal is None or not (principal.kind == "system" or principal.has_role("admin")):
        raise Forbidden("only the system or an admin may expire orders", code=NOT_ALLOWED)
    return await saga.expire_overdue()


# -- queries --------------------------------------------------------------------------------


async def get_order(query: GetOrder, orders: Orders, principal: Principal) -> Order:
    order = await orders.get(query.order_id)
    if order is None or not order.visible_to(principal.subject, _admin(principal)):
        # Someone else's order is as absent as one that does not exist.
        raise NotFound(f"no order {query.order_id}", code=ORDER_NOT_FOUND, field="order_id")
    return _view(order)


async def list_orders(query: ListOrders, orders: Orders, principal: Principal) -> list[Order]:
    return [_view(order) for order in await orders.of_customer(principal.subject, query.limit)]


# -- the saga's reactions -------------------------------------------------------------------


async def on_stock_reserved(event: StockReserved, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.stock_reserved())


async def on_stock_reservation_failed(event: StockReservationFailed, saga: SagaRunner) -> None:
    reason = event.reason if event.sku is None else f"{event.reason}: {event.sku}"
    await saga.advance(event.order_id, lambda state: state.stock_reservation_failed(reason))


async def on_stock_sold(event: StockSold, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.stock_sold())


async def on_stock_released(event: StockReleased, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.stock_released())


async def on_payment_captured(event: PaymentCaptured, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.payment_captured())


async def on_payment_declined(event: PaymentDeclined, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.payment_declined(event.reason))


async def on_payment_failed(event: PaymentFailed, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.payment_failed(event.reason))


async def on_payment_voided(event: PaymentVoided, saga: SagaRunner) -> None:
    await saga.advance(event.order_id, lambda state: state.payment_voided())


def _admin(principal: Principal) -> bool:
    return principal.has_role("admin") or principal.kind == "system"


def _view(order: domain.Order) -> Order:
    return Order(
        id=order.id,
        customer_id=order.customer_id,
        status=order.status.value,
        lines=[
            OrderLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
            for line in order.lines
        ],
        total_cents=order.total_cents,
        currency=order.currency,
        reason=order.reason,
        created_at=order.created_at,
    )

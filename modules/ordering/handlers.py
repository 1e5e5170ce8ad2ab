"""Ordering's handlers: the commands and queries of orders, and the saga's reactions to what
inventory and payments answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kernel import (
    Bus,
    Clock,
    Conflict,
    Envelope,
    Forbidden,
    NotFound,
    Principal,
    Rejected,
    new_entity_id,
)
from modules.inventory.contracts import (
    StockReleased,
    StockReservationFailed,
    StockReserved,
    StockSold,
)
from modules.ordering import admission, domain
from modules.ordering.contracts import (
    IDEMPOTENCY_KEY_REUSED,
    MIXED_CURRENCIES,
    NOT_ALLOWED,
    ORDER_NOT_FOUND,
    ORDER_TOO_LARGE,
    TOO_MANY_OPEN_ORDERS,
    TOO_MANY_ORDERS,
    UNKNOWN_SKU,
    ExpireOrders,
    ForgetIdempotencyKeys,
    GetOrder,
    ListOrders,
    OrderLine,
    OrderPlaced,
    OrderView,
    PlaceOrder,
)
from modules.ordering.prices import PriceBook
from modules.ordering.repository import IdempotencyKeys, Orders
from modules.ordering.saga import SagaRunner
from modules.ordering.settings import OrderingSettings
from modules.ordering.waiters import OrderWaiters
from modules.payments.contracts import (
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
)

log = logging.getLogger("cleave.ordering")

_CODES = {
    domain.UNKNOWN_SKU: UNKNOWN_SKU,
    domain.MIXED_CURRENCIES: MIXED_CURRENCIES,
    domain.TOO_LARGE: ORDER_TOO_LARGE,
}
_REFUSALS = {
    admission.KEY_REUSED: (IDEMPOTENCY_KEY_REUSED, "idempotency_key"),
    admission.TOO_MANY_OPEN: (TOO_MANY_OPEN_ORDERS, None),
    admission.TOO_FAST: (TOO_MANY_ORDERS, None),
}

#: A wait ends this long before the caller's deadline, so that the answer reaches it in time.
_ANSWER_MARGIN_SECONDS = 1.0

# -- commands -------------------------------------------------------------------------------


async def place_order(
    command: PlaceOrder,
    runner: SagaRunner,
    orders: Orders,
    keys: IdempotencyKeys,
    settings: OrderingSettings,
    prices: PriceBook,
    bus: Bus,
    clock: Clock,
    principal: Principal,
) -> OrderView:
    if not (principal.has_role("customer") or principal.has_role("admin")):
        raise Forbidden("only a customer or an admin may place an order", code=NOT_ALLOWED)
    requested = [(line.sku, line.quantity) for line in command.lines]
    # Prices first, from ordering's cache while it is fresh (ADR 0018), before this unit
    # reads or writes: asking the catalog while holding a connection would need a second
    # one, and a full pool of units each waiting for a second connection waits for good (a
    # cold cache under load on PostgreSQL); a synchronous call after a write would also
    # wait for SQLite's writer, which this unit then holds.
    known = await prices.current(list(dict.fromkeys(sku for sku, _ in requested)), bus)
    customer, key = principal.subject, command.idempotency_key
    sent = admission.fingerprint(requested, command.payment_token)
    try:
        if key is not None:
            retried = admission.retried_order(await keys.get(customer, key), sent)
            if retried is not None:
                return _view(await _order(orders, retried))
        open_orders, recent_orders = await orders.admission_counts(
            customer, clock.now() - admission.MINUTE
        )
        admission.check_limits(
            open_orders=open_orders,
            max_open_orders=settings.max_open_orders,
            recent_orders=recent_orders,
            orders_per_minute=settings.orders_per_minute,
        )
    except admission.NotAdmitted as refusal:
        code, field = _REFUSALS[refusal.code]
        raise Conflict(refusal.detail, code=code, field=field) from None
    catalog = {sku: (price.price_cents, price.currency) for sku, price in known.items()}
    versions = {sku: price.version for sku, price in known.items()}
    try:
        lines, total, currency = domain.price_lines(requested, catalog, versions)
    except domain.PricingError as error:
        field = "lines" if error.index is None else f"lines[{error.index}].sku"
        raise Rejected(error.detail, code=_CODES[error.code], field=field) from None
    order = domain.Order(
        id=new_entity_id(),
        customer_id=customer,
        lines=lines,
        total_cents=total,
        currency=currency,
        created_at=clock.now(),
    )
    await runner.start(order, command.payment_token)
    if key is not None:
        # In the order's unit of work: the order and its key are stored together or not at
        # all, and of two concurrent retries only one stores either.
        await keys.add(customer, key, admission.KnownKey(sent, order.id), order.created_at)
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
    command: ExpireOrders, runner: SagaRunner, principal: Principal | None
) -> int:
    if principal is None or not principal.administers:
        raise Forbidden("only the system or an admin may expire orders", code=NOT_ALLOWED)
    return await runner.expire_overdue()


async def forget_idempotency_keys(
    command: ForgetIdempotencyKeys,
    keys: IdempotencyKeys,
    settings: OrderingSettings,
    clock: Clock,
    principal: Principal | None,
) -> int:
    if principal is None or not principal.administers:
        raise Forbidden("only the system or an admin may forget idempotency keys", code=NOT_ALLOWED)
    before = clock.now() - settings.idempotency_key_seconds
    return await keys.forget_older_than(before, settings.forget_batch)


# -- queries --------------------------------------------------------------------------------


async def get_order(
    query: GetOrder,
    orders: Orders,
    waiters: OrderWaiters,
    settings: OrderingSettings,
    bus: Bus,
    envelope: Envelope,
    principal: Principal,
) -> OrderView:
    if query.wait_seconds > 0:
        return await _wait_until_settled(query, waiters, settings, bus, envelope, principal)
    order = await orders.get(query.order_id)
    if order is None or not order.visible_to(principal.subject, principal.administers):
        # Someone else's order is as absent as one that does not exist.
        raise NotFound(f"no order {query.order_id}", code=ORDER_NOT_FOUND, field="order_id")
    return _view(order)


async def _wait_until_settled(
    query: GetOrder,
    waiters: OrderWaiters,
    settings: OrderingSettings,
    bus: Bus,
    envelope: Envelope,
    principal: Principal,
) -> OrderView:
    # Each look is a GetOrder of its own, in a unit of work of its own: this handler's unit
    # never opens a connection, so none is held while it waits.
    look = GetOrder(order_id=query.order_id)
    seconds = query.wait_seconds
    if envelope.deadline is not None:
        seconds = min(seconds, envelope.deadline - time.time() - _ANSWER_MARGIN_SECONDS)
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    with waiters.watch(query.order_id) as watch:
        while True:
            settled = watch.settled
            if settled is not None and settled.visible_to(principal.subject, principal.administers):
                return _view(settled)  # as the saga committed it: no second read
            watch.woken.clear()
            order = await bus.ask(look, principal=principal)
            left = ends - loop.time()
            if order.status != "PENDING" or left <= 0:
                return order
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, settings.wait_recheck_seconds)):
                    await watch.woken.wait()


async def list_orders(query: ListOrders, orders: Orders, principal: Principal) -> list[OrderView]:
    return [_view(order) for order in await orders.of_customer(principal.subject, query.limit)]


# -- the saga's reactions -------------------------------------------------------------------


async def on_stock_reserved(event: StockReserved, runner: SagaRunner) -> None:
    await runner.advance(event.order_id, lambda saga: saga.stock_reserved())


async def on_stock_reservation_failed(event: StockReservationFailed, runner: SagaRunner) -> None:
    reason = event.reason if event.sku is None else f"{event.reason}: {event.sku}"
    await runner.advance(event.order_id, lambda saga: saga.stock_reservation_failed(reason))


async def on_stock_sold(event: StockSold, runner: SagaRunner) -> None:
    await runner.advance(event.order_id, lambda saga: saga.stock_sold())


async def on_stock_released(event: StockReleased, runner: SagaRunner) -> None:
    await runner.advance(event.order_id, lambda saga: saga.stock_released())


async def on_payment_captured(event: PaymentCaptured, runner: SagaRunner) -> None:
    await runner.advance(event.order_id, lambda saga: saga.payment_captured())


async def on_payment_declined(event: PaymentDeclined, runner: SagaRunner) -> None:
    # What the provider said is for operators (here, and in payments' charges for admins):
    # the customer's order keeps a plain reason.
    log.info("the payment of order %s was declined: %s", event.order_id, event.reason)
    await runner.advance(event.order_id, lambda saga: saga.payment_declined())


async def on_payment_failed(event: PaymentFailed, runner: SagaRunner) -> None:
    log.warning("the payment of order %s failed: %s", event.order_id, event.reason)
    await runner.advance(event.order_id, lambda saga: saga.payment_failed())


async def on_payment_voided(event: PaymentVoided, runner: SagaRunner) -> None:
    await runner.advance(event.order_id, lambda saga: saga.payment_voided())


async def _order(orders: Orders, order_id: str) -> domain.Order:
    order = await orders.get(order_id)
    if order is None:  # a key is stored with its order and orders stay: a bug if missing
        raise LookupError(f"an idempotency key refers to order {order_id}, which is missing")
    return order


def _view(order: domain.Order) -> OrderView:
    return OrderView(
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

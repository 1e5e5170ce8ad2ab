"""Inventory's handlers."""

from __future__ import annotations

from kernel import Bus, Forbidden, NotFound, Principal, Rejected
from modules.catalog.contracts import GetProduct, ProductAdded
from modules.inventory.contracts import (
    NOT_ALLOWED,
    RESERVATION_NOT_FOUND,
    STOCK_LIMIT,
    GetStock,
    ReleaseStock,
    ReserveStock,
    Restock,
    SellStock,
    StockLevel,
    StockReleased,
    StockReservationFailed,
    StockReserved,
    StockRestocked,
    StockSold,
)
from modules.inventory.domain import (
    InsufficientStock,
    Reservation,
    ReservationStatus,
    Stock,
    StockLimitExceeded,
    merge_lines,
    reserve_all,
)
from modules.inventory.repository import Reservations, StockRecords


async def on_product_added(event: ProductAdded, stock: StockRecords) -> None:
    await stock.ensure(event.sku)


async def restock(
    command: Restock, stock: StockRecords, bus: Bus, principal: Principal | None
) -> StockLevel:
    if principal is None or not principal.administers:
        raise Forbidden("only an admin may restock", code=NOT_ALLOWED)
    record = await stock.get(command.sku, for_update=True)
    if record is None:
        # ProductAdded may not have arrived yet: the catalog is the authority on SKUs.
        await bus.ask(GetProduct(sku=command.sku))  # raises NotFound for an unknown SKU
        record = await stock.ensure(command.sku)
    try:
        record.restock(command.quantity)
    except StockLimitExceeded as limit:
        raise Rejected(str(limit), code=STOCK_LIMIT, field="quantity") from None
    await stock.save(record)
    await bus.publish(
        StockRestocked(sku=record.sku, quantity=command.quantity, on_hand=record.on_hand)
    )
    return _level(record)


async def get_stock(query: GetStock, stock: StockRecords, bus: Bus) -> StockLevel:
    record = await stock.get(query.sku)
    if record is None:
        await bus.ask(GetProduct(sku=query.sku))  # raises NotFound for an unknown SKU
        record = Stock(sku=query.sku)
    return _level(record)


async def reserve_stock(
    command: ReserveStock, stock: StockRecords, reservations: Reservations, bus: Bus
) -> None:
    existing = await reservations.get(command.order_id)
    if existing is not None:
        await bus.publish(_outcome(existing))  # the same question gets the same answer
        return
    wanted = merge_lines([(line.sku, line.quantity) for line in command.lines])
    records = await stock.get_many(list(wanted))
    try:
        reserve_all(records, wanted)
    except InsufficientStock as short:
        reservation = Reservation(
            order_id=command.order_id,
            status=ReservationStatus.FAILED,
            lines=wanted,
            failure="insufficient_stock" if short.sku in records else "unknown_sku",
            failed_sku=short.sku,
        )
    else:
        await stock.save_all(list(records.values()))
        reservation = Reservation(
            order_id=command.order_id, status=ReservationStatus.RESERVED, lines=wanted
        )
    await reservations.add(reservation)
    await bus.publish(_outcome(reservation))


async def release_stock(
    command: ReleaseStock, stock: StockRecords, reservations: Reservations, bus: Bus
) -> None:
    reservation = await reservations.get(command.order_id)
    if reservation is None:
        # Released before it was reserved (a timed-out order): remember it, so that a late
        # ReserveStock for this order reserves nothing.
        await reservations.add(
            Reservation(order_id=command.order_id, status=ReservationStatus.RELEASED)
        )
    elif reservation.status is ReservationStatus.RESERVED:
        records = await stock.get_many(list(reservation.lines))
        for sku, quantity in reservation.lines.items():
            records[sku].release(quantity)
        await stock.save_all([records[sku] for sku in reservation.lines])
        reservation.status = ReservationStatus.RELEASED
        await reservations.save(reservation, ReservationStatus.RESERVED)
    await bus.publish(StockReleased(order_id=command.order_id))


async def sell_stock(
    command: SellStock, stock: StockRecords, reservations: Reservations, bus: Bus
) -> None:
    reservation = await reservations.get(command.order_id)
    if reservation is None or reservation.status not in (
        ReservationStatus.RESERVED,
        ReservationStatus.SOLD,
    ):
        raise NotFound(
            f"order {command.order_id} holds no reservation to sell", code=RESERVATION_NOT_FOUND
        )
    if reservation.status is ReservationStatus.RESERVED:
        records = await stock.get_many(list(reservation.lines))
        for sku, quantity in reservation.lines.items():
            records[sku].sell(quantity)
        await stock.save_all([records[sku] for sku in reservation.lines])
        reservation.status = ReservationStatus.SOLD
        await reservations.save(reservation, ReservationStatus.RESERVED)
    await bus.publish(StockSold(order_id=command.order_id))


def _outcome(reservation: Reservation) -> StockReserved | StockReservationFailed:
    if reservation.status in (ReservationStatus.RESERVED, ReservationStatus.SOLD):
        return StockReserved(order_id=reservation.order_id)
    if reservation.status is ReservationStatus.RELEASED and reservation.failure is None:
        return StockReservationFailed(order_id=reservation.order_id, reason="released")
    reason = "unknown_sku" if reservation.failure == "unknown_sku" else "insufficient_stock"
    return StockReservationFailed(
        order_id=reservation.order_id, reason=reason, sku=reservation.failed_sku
    )


def _level(record: Stock) -> StockLevel:
    return StockLevel(
        sku=record.sku,
        on_hand=record.on_hand,
        reserved=record.reserved,
        available=record.available,
    )

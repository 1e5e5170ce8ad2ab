"""Stock and reservations in inventory's tables."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, bindparam, case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Update

from kernel import ConcurrencyConflict, Transaction, conflict_on, write_checked
from modules.inventory.domain import Reservation, ReservationStatus, Stock
from modules.inventory.tables import reservations, stock

# Built once: building a statement (and its cache key) cost more than running it on SQLite.
_STOCK = select(stock).where(stock.c.sku == bindparam("sku"))
_STOCK_FOR_UPDATE = _STOCK.with_for_update()
_STOCKS_FOR_UPDATE = (
    select(stock)
    .where(stock.c.sku.in_(bindparam("skus", expanding=True)))
    .order_by(stock.c.sku)
    .with_for_update()
)
_ADD_STOCK = insert(stock)
#: How many stock records one statement stores at most (``_save_stocks``): an order's lines
#: are a handful, and each count has a statement of its own, built once.
_SAVED_TOGETHER_AT_MOST = 16
_SAVE_STOCKS: dict[int, Update] = {}


def _save_stocks(count: int) -> Update:
    """One ``UPDATE`` storing ``count`` stock records, each only if its version is still the
    one read: a round trip for all of them instead of one each."""
    statement = _SAVE_STOCKS.get(count)
    if statement is None:
        skus = range(count)

        def each(column: str) -> Any:
            kind = stock.c[column].type
            return case(
                *(
                    (stock.c.sku == bindparam(f"sku_{i}"), bindparam(f"{column}_{i}", type_=kind))
                    for i in skus
                ),
                else_=stock.c[column],
            )

        statement = _SAVE_STOCKS[count] = (
            update(stock)
            .where(
                or_(
                    *(
                        and_(
                            stock.c.sku == bindparam(f"sku_{i}"),
                            stock.c.version == bindparam(f"expected_{i}"),
                        )
                        for i in skus
                    )
                )
            )
            .values(on_hand=each("on_hand"), reserved=each("reserved"), version=each("version"))
        )
    return statement


_RESERVATION = select(reservations).where(reservations.c.order_id == bindparam("order_id"))
_ADD_RESERVATION = insert(reservations)
_SAVE_RESERVATION = (
    update(reservations)
    .where(
        reservations.c.order_id == bindparam("match_order_id"),
        reservations.c.status == bindparam("previous"),
    )
    .values({name: bindparam(name) for name in ("status", "lines", "failure", "failed_sku")})
)


class StockRecords:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, sku: str, *, for_update: bool = False) -> Stock | None:
        connection = await self._transaction.connection()
        query = _STOCK_FOR_UPDATE if for_update else _STOCK
        row = (await connection.execute(query, {"sku": sku})).first()
        return None if row is None else _stock(row)

    async def get_many(self, skus: list[str]) -> dict[str, Stock]:
        """Stock records to change, locked in SKU order where the database locks rows
        (PostgreSQL), so that concurrent reservations of a popular SKU queue instead of
        failing their version check."""
        connection = await self._transaction.connection()
        rows = await connection.execute(_STOCKS_FOR_UPDATE, {"skus": skus})
        return {row.sku: _stock(row) for row in rows}

    async def ensure(self, sku: str) -> Stock:
        """The stock of ``sku``, created at zero if it has none yet."""
        found = await self.get(sku)
        if found is not None:
            return found
        connection = await self._transaction.connection()
        # Created concurrently: start over and read it.
        with conflict_on(IntegrityError, ConcurrencyConflict(f"stock {sku} created meanwhile")):
            await connection.execute(
                _ADD_STOCK, {"sku": sku, "on_hand": 0, "reserved": 0, "version": 0}
            )
        return Stock(sku=sku)

    async def save_all(self, records: list[Stock]) -> None:
        """Store changed stocks together: all of them, or none (the unit of work rolls back)
        and ``ConcurrencyConflict`` if someone changed one of them meanwhile."""
        for start in range(0, len(records), _SAVED_TOGETHER_AT_MOST):
            together = records[start : start + _SAVED_TOGETHER_AT_MOST]
            connection = await self._transaction.connection()
            values: dict[str, Any] = {}
            for i, record in enumerate(together):
                values[f"sku_{i}"] = record.sku
                values[f"expected_{i}"] = record.version
                values[f"on_hand_{i}"] = record.on_hand
                values[f"reserved_{i}"] = record.reserved
                values[f"version_{i}"] = record.version + 1
            skus = ", ".join(record.sku for record in together)
            await write_checked(
                connection,
                _save_stocks(len(together)),
                values,
                what=f"stock {skus}",
                rows=len(together),
            )
        for record in records:
            record.version += 1

    async def save(self, record: Stock) -> None:
        """Store a changed stock; ``ConcurrencyConflict`` if someone changed it meanwhile."""
        await self.save_all([record])


class Reservations:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, order_id: str) -> Reservation | None:
        connection = await self._transaction.connection()
        row = (await connection.execute(_RESERVATION, {"order_id": order_id})).first()
        return None if row is None else _reservation(row)

    async def add(self, reservation: Reservation) -> None:
        connection = await self._transaction.connection()
        # A concurrent command for the same order won.
        await write_checked(
            connection,
            _ADD_RESERVATION,
            _row(reservation),
            what=f"reservation {reservation.order_id}",
            exists=f"reservation {reservation.order_id} exists",
        )

    async def save(self, reservation: Reservation, previous: ReservationStatus) -> None:
        """Store a settled reservation, only if nobody settled it meanwhile."""
        connection = await self._transaction.connection()
        values = _row(reservation)
        values["match_order_id"] = values.pop("order_id")
        await write_checked(
            connection,
            _SAVE_RESERVATION,
            {**values, "previous": previous.value},
            what=f"reservation {reservation.order_id}",
        )


def _stock(row: Any) -> Stock:
    return Stock(sku=row.sku, on_hand=row.on_hand, reserved=row.reserved, version=row.version)


def _reservation(row: Any) -> Reservation:
    return Reservation(
        order_id=row.order_id,
        status=ReservationStatus(row.status),
        lines=json.loads(row.lines),
        failure=row.failure,
        failed_sku=row.failed_sku,
    )


def _row(reservation: Reservation) -> dict[str, Any]:
    return {
        "order_id": reservation.order_id,
        "status": reservation.status.value,
        "lines": json.dumps(reservation.lines),
        "failure": reservation.failure,
        "failed_sku": reservation.failed_sku,
    }

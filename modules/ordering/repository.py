"""Orders, their sagas and the idempotency keys they were placed with, in ordering's tables
(SQLAlchemy Core)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Insert, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from kernel import ConcurrencyConflict, Transaction, conflict_on, write_checked
from modules.ordering.admission import KnownKey
from modules.ordering.domain import UNSETTLED, Line, Order, OrderStatus, Saga, Step
from modules.ordering.tables import idempotency_keys, order_lines, orders, sagas

# The statements of the order flow, built once: building one (and its cache key) cost more
# than running it on SQLite (144 µs against 39 µs for an UPDATE, measured).
_ADD_ORDER = insert(orders)
_LINE_COLUMNS = ("order_id", "position", "sku", "quantity", "unit_price_cents", "catalog_version")
#: How many lines one statement adds at most (``_add_lines``): each count has a statement of
#: its own, built once.
_ADDED_TOGETHER_AT_MOST = 16
_ADD_LINES: dict[int, Insert] = {}
# An order and its lines in one statement (every look at an order, and the saga's settling,
# reads one): a row per line, the order's columns repeated.
_ORDER = (
    select(
        orders,
        order_lines.c.sku,
        order_lines.c.quantity,
        order_lines.c.unit_price_cents,
        order_lines.c.catalog_version,
    )
    .outerjoin(order_lines, order_lines.c.order_id == orders.c.id)
    .where(orders.c.id == bindparam("order_id"))
    .order_by(order_lines.c.position)
)
_LINES = (
    select(order_lines)
    .where(order_lines.c.order_id.in_(bindparam("order_ids", expanding=True)))
    .order_by(order_lines.c.order_id, order_lines.c.position)
)
# Both of a customer's admission counts in one statement: one round trip, not two.
_ADMISSION_COUNTS = select(
    func.count().filter(orders.c.status == OrderStatus.PENDING.value),
    func.count().filter(orders.c.created_at >= bindparam("since")),
).where(orders.c.customer_id == bindparam("customer_id"))
_SAVE_ORDER = (
    update(orders)
    .where(orders.c.id == bindparam("order_id"), orders.c.version == bindparam("expected"))
    .values(status=bindparam("status"), reason=bindparam("reason"), version=bindparam("next"))
)
_ADD_SAGA = insert(sagas)
_SAGA = select(sagas).where(sagas.c.order_id == bindparam("order_id"))
_SAGA_COLUMNS = (
    "step",
    "reason",
    "amount_cents",
    "currency",
    "payment_token",
    "deadline",
    "stock_returned",
    "void_pending",
)
_SAVE_SAGA = (
    update(sagas)
    .where(
        sagas.c.order_id == bindparam("match_order_id"), sagas.c.version == bindparam("expected")
    )
    .values({name: bindparam(name) for name in (*_SAGA_COLUMNS, "version")})
)
#: Sagas still waiting, past their deadline (the ``ExpireOrders`` timer's read, every second).
_EXPIRED = (
    select(sagas)
    .where(
        sagas.c.step.in_([step.value for step in UNSETTLED]),
        sagas.c.deadline <= bindparam("now"),
    )
    .order_by(sagas.c.deadline)
    .limit(bindparam("limit"))
)
_KEY = select(idempotency_keys.c.fingerprint, idempotency_keys.c.order_id).where(
    idempotency_keys.c.customer_id == bindparam("customer_id"),
    idempotency_keys.c.key == bindparam("key"),
)
_ADD_KEY = insert(idempotency_keys)


def _add_lines(count: int) -> Insert:
    """One ``INSERT`` of ``count`` lines: a round trip for all of them (on PostgreSQL none
    of its own: it goes with the order's outbox records, ``write_checked``)."""
    statement = _ADD_LINES.get(count)
    if statement is None:
        statement = _ADD_LINES[count] = insert(order_lines).values(
            [{name: bindparam(f"{name}_{i}") for name in _LINE_COLUMNS} for i in range(count)]
        )
    return statement


class Orders:
    """The orders customers placed, with their lines."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def add(self, order: Order) -> None:
        connection = await self._transaction.connection()
        # Ids are random: only a rerun can collide.
        with conflict_on(IntegrityError, ConcurrencyConflict(f"order {order.id} exists")):
            await connection.execute(
                _ADD_ORDER,
                {
                    "id": order.id,
                    "customer_id": order.customer_id,
                    "status": order.status.value,
                    "reason": order.reason,
                    "total_cents": order.total_cents,
                    "currency": order.currency,
                    "created_at": order.created_at,
                    "version": order.version,
                },
            )
        for start in range(0, len(order.lines), _ADDED_TOGETHER_AT_MOST):
            together = order.lines[start : start + _ADDED_TOGETHER_AT_MOST]
            values: dict[str, Any] = {}
            for i, line in enumerate(together):
                values[f"order_id_{i}"] = order.id
                values[f"position_{i}"] = start + i
                values[f"sku_{i}"] = line.sku
                values[f"quantity_{i}"] = line.quantity
                values[f"unit_price_cents_{i}"] = line.unit_price_cents
                values[f"catalog_version_{i}"] = line.catalog_version
            await write_checked(
                connection,
                _add_lines(len(together)),
                values,
                what=f"order {order.id}",
                rows=len(together),
            )

    async def get(self, order_id: str) -> Order | None:
        connection = await self._transaction.connection()
        rows = (await connection.execute(_ORDER, {"order_id": order_id})).all()
        if not rows:
            return None
        lines = [
            Line(
                sku=row.sku,
                quantity=row.quantity,
                unit_price_cents=row.unit_price_cents,
                catalog_version=row.catalog_version,
            )
            for row in rows
            if row.sku is not None
        ]
        return _order(rows[0], lines)

    async def of_customer(self, customer_id: str, limit: int) -> list[Order]:
        """The customer's orders, newest first."""
        connection = await self._transaction.connection()
        rows = (
            await connection.execute(
                select(orders)
                .where(orders.c.customer_id == customer_id)
                .order_by(orders.c.created_at.desc(), orders.c.id.desc())
                .limit(limit)
            )
        ).all()
        return await self._with_lines(rows)

    async def admission_counts(self, customer_id: str, since: float) -> tuple[int, int]:
        """How many of the customer's orders are PENDING, and how many they placed at
        ``since`` or later."""
        connection = await self._transaction.connection()
        result = await connection.execute(
            _ADMISSION_COUNTS, {"customer_id": customer_id, "since": since}
        )
        row = result.one()
        return int(row[0] or 0), int(row[1] or 0)

    async def save(self, order: Order) -> None:
        """Store a settled order; ``ConcurrencyConflict`` if it changed meanwhile."""
        connection = await self._transaction.connection()
        await write_checked(
            connection,
            _SAVE_ORDER,
            {
                "order_id": order.id,
                "expected": order.version,
                "status": order.status.value,
                "reason": order.reason,
                "next": order.version + 1,
            },
            what=f"order {order.id}",
        )
        order.version += 1

    async def _with_lines(self, rows: list[Any]) -> list[Order]:
        if not rows:
            return []
        connection = await self._transaction.connection()
        lines: dict[str, list[Line]] = {row.id: [] for row in rows}
        found = await connection.execute(_LINES, {"order_ids": list(lines)})
        for line in found:
            lines[line.order_id].append(
                Line(
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price_cents=line.unit_price_cents,
                    catalog_version=line.catalog_version,
                )
            )
        return [_order(row, lines[row.id]) for row in rows]


class Sagas:
    """The persisted state of each order's saga."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def add(self, saga: Saga) -> None:
        connection = await self._transaction.connection()
        await write_checked(
            connection,
            _ADD_SAGA,
            # What the order was priced at never changes: written here only, not by save.
            {**_row(saga), "version": saga.version, **_priced(saga)},
            what=f"saga {saga.order_id}",
            exists=f"saga {saga.order_id} exists",
        )

    async def get(self, order_id: str) -> Saga | None:
        connection = await self._transaction.connection()
        row = (await connection.execute(_SAGA, {"order_id": order_id})).first()
        return None if row is None else _saga(row)

    async def expired(self, now: float, limit: int) -> list[Saga]:
        """At most ``limit`` unsettled sagas past their deadline, the longest overdue first."""
        connection = await self._transaction.connection()
        rows = await connection.execute(_EXPIRED, {"now": now, "limit": limit})
        return [_saga(row) for row in rows]

    async def save(self, saga: Saga) -> None:
        """Store a transition; ``ConcurrencyConflict`` if another one won the race."""
        connection = await self._transaction.connection()
        values = _row(saga)
        del values["order_id"]
        await write_checked(
            connection,
            _SAVE_SAGA,
            {
                **values,
                "match_order_id": saga.order_id,
                "expected": saga.version,
                "version": saga.version + 1,
            },
            what=f"saga {saga.order_id}",
        )
        saga.version += 1


class IdempotencyKeys:
    """The keys customers placed orders with, each with the order it placed."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, customer_id: str, key: str) -> KnownKey | None:
        connection = await self._transaction.connection()
        row = (await connection.execute(_KEY, {"customer_id": customer_id, "key": key})).first()
        return None if row is None else KnownKey(fingerprint=row.fingerprint, order_id=row.order_id)

    async def add(self, customer_id: str, key: str, known: KnownKey, created_at: float) -> None:
        """Record the key, or ``ConcurrencyConflict`` if a concurrent retry recorded it first
        (the loser runs again and finds the winner's order)."""
        connection = await self._transaction.connection()
        with conflict_on(
            IntegrityError, ConcurrencyConflict(f"idempotency key {key!r} was just used")
        ):
            await connection.execute(
                _ADD_KEY,
                {
                    "customer_id": customer_id,
                    "key": key,
                    "fingerprint": known.fingerprint,
                    "order_id": known.order_id,
                    "created_at": created_at,
                },
            )

    async def forget_older_than(self, before: float, limit: int) -> int:
        """Delete about ``limit`` of the keys recorded before ``before``, the oldest first (a
        batch keeps each write short); how many were deleted."""
        connection = await self._transaction.connection()
        created_at = idempotency_keys.c.created_at
        # The creation time of the limit-th oldest key: the batch ends there.
        edge = await connection.scalar(
            select(created_at)
            .where(created_at < before)
            .order_by(created_at)
            .offset(limit - 1)
            .limit(1)
        )
        condition = created_at < before if edge is None else created_at <= edge
        result = await connection.execute(delete(idempotency_keys).where(condition))
        return int(result.rowcount or 0)


def _order(row: Any, lines: list[Line]) -> Order:
    return Order(
        id=row.id,
        customer_id=row.customer_id,
        lines=lines,
        total_cents=row.total_cents,
        currency=row.currency,
        created_at=row.created_at,
        status=OrderStatus(row.status),
        reason=row.reason,
        version=row.version,
    )


#: The stored token of a saga that forgot it (the column has never been nullable).
_NO_TOKEN = ""


def _row(saga: Saga) -> dict[str, Any]:
    return {
        "order_id": saga.order_id,
        "step": saga.step.value,
        "reason": saga.reason,
        "amount_cents": saga.amount_cents,
        "currency": saga.currency,
        "payment_token": saga.payment_token or _NO_TOKEN,
        "deadline": saga.deadline,
        "stock_returned": saga.stock_returned,
        "void_pending": saga.void_pending,
    }


def _saga(row: Any) -> Saga:
    return Saga(
        order_id=row.order_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        payment_token=row.payment_token or None,
        deadline=row.deadline,
        step=Step(row.step),
        reason=row.reason,
        stock_returned=bool(row.stock_returned),
        void_pending=bool(row.void_pending),
        version=row.version,
        placed_at=row.placed_at,
        priced=_PRICED.decode(row.priced) if row.priced else {},
    )


_PRICED = msgspec.json.Decoder(dict[str, int])


def _priced(saga: Saga) -> dict[str, Any]:
    return {"placed_at": saga.placed_at, "priced": msgspec.json.encode(saga.priced).decode()}

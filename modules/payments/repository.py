"""Charges in payments' tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update

from kernel import Transaction, write_checked
from modules.payments.domain import Charge, ChargeStatus
from modules.payments.tables import charges

# Built once: building a statement (and its cache key) cost more than running it on SQLite.
_OF_ORDER = (
    select(charges)
    .where(charges.c.order_id == bindparam("order_id"))
    .order_by(charges.c.created_at, charges.c.id)
)
_ADD = insert(charges)
_SAVE_VOIDED = (
    update(charges)
    .where(charges.c.id == bindparam("charge_id"), charges.c.status == ChargeStatus.CAPTURED.value)
    .values(status=bindparam("status"), reason=bindparam("reason"))
)


class Charges:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def of_order(self, order_id: str) -> list[Charge]:
        """The order's charges, oldest first."""
        connection = await self._transaction.connection()
        rows = await connection.execute(_OF_ORDER, {"order_id": order_id})
        return [_charge(row) for row in rows]

    async def add(self, charge: Charge) -> None:
        """Record a charge; ``ConcurrencyConflict`` if another settled the order meanwhile."""
        connection = await self._transaction.connection()
        await write_checked(
            connection,
            _ADD,
            _row(charge),
            what=f"charge {charge.id}",
            exists=f"order {charge.order_id} was settled meanwhile",
        )

    async def save_voided(self, charge: Charge) -> None:
        """Store a captured charge as voided, only if it is still captured."""
        connection = await self._transaction.connection()
        await write_checked(
            connection,
            _SAVE_VOIDED,
            {"charge_id": charge.id, "status": charge.status.value, "reason": charge.reason},
            what=f"charge {charge.id}",
        )


def _charge(row: Any) -> Charge:
    return Charge(
        id=row.id,
        order_id=row.order_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=ChargeStatus(row.status),
        created_at=row.created_at,
        provider_charge_id=row.provider_charge_id,
        reason=row.reason,
    )


def _row(charge: Charge) -> dict[str, Any]:
    return {
        "id": charge.id,
        "order_id": charge.order_id,
        "amount_cents": charge.amount_cents,
        "currency": charge.currency,
        "status": charge.status.value,
        "provider_charge_id": charge.provider_charge_id,
        "reason": charge.reason,
        "created_at": charge.created_at,
    }

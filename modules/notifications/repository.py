"""Notifications in their table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from kernel import ConcurrencyConflict, Transaction, conflict_on
from modules.notifications.domain import Kind, Notification
from modules.notifications.tables import notifications

# Built once: building a statement (and its cache key) cost more than running it on SQLite.
_EXISTS = select(notifications.c.id).where(
    notifications.c.kind == bindparam("kind"), notifications.c.about == bindparam("about")
)
_ADD = insert(notifications)


class Notifications:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def exists(self, kind: Kind, about: str) -> bool:
        connection = await self._transaction.connection()
        found = await connection.execute(_EXISTS, {"kind": kind.value, "about": about})
        return found.first() is not None

    async def add(self, notification: Notification) -> None:
        connection = await self._transaction.connection()
        # The same fact, told twice at once: run again, and the second sees the first.
        with conflict_on(
            IntegrityError, ConcurrencyConflict(f"{notification.kind} {notification.about} exists")
        ):
            await connection.execute(
                _ADD,
                {
                    "id": notification.id,
                    "recipient_id": notification.recipient_id,
                    "kind": notification.kind.value,
                    "about": notification.about,
                    "order_id": notification.order_id,
                    "subject": notification.subject,
                    "body": notification.body,
                    "created_at": notification.created_at,
                },
            )

    async def of_recipient(self, recipient_id: str, limit: int) -> list[Notification]:
        """The recipient's notifications, newest first."""
        connection = await self._transaction.connection()
        rows = await connection.execute(
            select(notifications)
            .where(notifications.c.recipient_id == recipient_id)
            .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
            .limit(limit)
        )
        return [_notification(row) for row in rows]


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        recipient_id=row.recipient_id,
        kind=Kind(row.kind),
        about=row.about,
        order_id=row.order_id,
        subject=row.subject,
        body=row.body,
        created_at=row.created_at,
    )

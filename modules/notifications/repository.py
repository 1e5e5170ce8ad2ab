"""Notifications in their table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.exc import IntegrityError

from kernel import ConcurrencyConflict, Transaction, conflict_on
from modules.notifications.domain import Kind, Notification
from modules.notifications.tables import notifications

# Built once: building a statement (and its cache key) cost more than running it on SQLite.
# The notification, unless one of its kind about the same thing is stored: the check and the
# write in one statement (one round trip).
_ADD_ONCE = insert(notifications).from_select(
    [column.name for column in notifications.c],
    select(*(bindparam(column.name, type_=column.type) for column in notifications.c)).where(
        ~exists().where(
            notifications.c.kind == bindparam("kind"), notifications.c.about == bindparam("about")
        )
    ),
)


class Notifications:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def add_once(self, notification: Notification) -> bool:
        """Store ``notification`` unless one of its kind about the same thing is stored;
        whether it was."""
        connection = await self._transaction.connection()
        # Told twice at once: both see none, one breaks the unique key and runs again.
        with conflict_on(
            IntegrityError, ConcurrencyConflict(f"{notification.kind} {notification.about} exists")
        ):
            result = await connection.execute(_ADD_ONCE, _row(notification))
        return bool(result.rowcount == 1)

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


def _row(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "recipient_id": notification.recipient_id,
        "kind": notification.kind.value,
        "about": notification.about,
        "order_id": notification.order_id,
        "subject": notification.subject,
        "body": notification.body,
        "created_at": notification.created_at,
    }

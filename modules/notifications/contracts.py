"""Notifications: the messages the shop sends its users (order confirmed, cancelled...).

Produced asynchronously from other modules' events; a user reads their own.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from kernel import Query
from modules.identity.contracts import UserRegistered
from modules.ordering.contracts import OrderCancelled, OrderConfirmed, OrderRejected


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    recipient_id: str
    subject: str
    body: str
    order_id: str | None = None
    created_at: float


class ListNotifications(
    Query[list[Notification]], frozen=True, kw_only=True, tag="notifications.ListNotifications"
):
    """The principal's notifications, newest first."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


#: The events notifications turns into messages to users.
SUBSCRIBES_TO = (UserRegistered, OrderConfirmed, OrderCancelled, OrderRejected)

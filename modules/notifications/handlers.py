"""Notifications' handlers: one per subscribed event, and the query of a user's messages."""

from __future__ import annotations

from kernel import Clock, Principal, new_entity_id
from modules.identity.contracts import UserRegistered
from modules.notifications import domain
from modules.notifications.contracts import ListNotifications, Notification
from modules.notifications.repository import Notifications
from modules.ordering.contracts import OrderCancelled, OrderConfirmed, OrderRejected


async def on_user_registered(
    event: UserRegistered, notifications: Notifications, clock: Clock
) -> None:
    await _notify(event.user_id, domain.welcome(event.user_id, event.name), notifications, clock)


async def on_order_confirmed(
    event: OrderConfirmed, notifications: Notifications, clock: Clock
) -> None:
    message = domain.order_confirmed(event.order_id, event.total_cents, event.currency)
    await _notify(event.customer_id, message, notifications, clock)


async def on_order_cancelled(
    event: OrderCancelled, notifications: Notifications, clock: Clock
) -> None:
    message = domain.order_cancelled(event.order_id, event.reason)
    await _notify(event.customer_id, message, notifications, clock)


async def on_order_rejected(
    event: OrderRejected, notifications: Notifications, clock: Clock
) -> None:
    message = domain.order_rejected(event.order_id, event.reason)
    await _notify(event.customer_id, message, notifications, clock)


async def list_notifications(
    query: ListNotifications, notifications: Notifications, principal: Principal
) -> list[Notification]:
    found = await notifications.of_recipient(principal.subject, query.limit)
    return [
        Notification(
            id=item.id,
            recipient_id=item.recipient_id,
            subject=item.subject,
            body=item.body,
            order_id=item.order_id,
            created_at=item.created_at,
        )
        for item in found
    ]


async def _notify(
    recipient_id: str, message: domain.Message, notifications: Notifications, clock: Clock
) -> None:
    # The inbox drops a redelivered event; this also covers the same fact told by two
    # different events (a republished one has a new message id).
    await notifications.add_once(
        domain.Notification(
            id=new_entity_id(),
            recipient_id=recipient_id,
            kind=message.kind,
            about=message.about,
            order_id=message.order_id,
            subject=message.subject,
            body=message.body,
            created_at=clock.now(),
        )
    )

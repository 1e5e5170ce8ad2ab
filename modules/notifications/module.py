"""The notifications module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module
from modules.identity.contracts import UserRegistered
from modules.notifications import api, contracts, handlers
from modules.notifications.repository import Notifications
from modules.notifications.tables import metadata
from modules.ordering.contracts import OrderCancelled, OrderConfirmed, OrderRejected


def register(container: Any) -> None:
    container.register(Notifications)


module = Module(
    name="notifications",
    contracts=contracts,
    handlers={contracts.ListNotifications: handlers.list_notifications},
    subscriptions={
        UserRegistered: [handlers.on_user_registered],
        OrderConfirmed: [handlers.on_order_confirmed],
        OrderCancelled: [handlers.on_order_cancelled],
        OrderRejected: [handlers.on_order_rejected],
    },
    wiring=register,
    routes=api.routes,
    tables=metadata,
)

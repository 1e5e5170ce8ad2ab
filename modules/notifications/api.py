"""Notifications' public REST routes."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from kernel import Bus, Principal
from modules.notifications.contracts import ListNotifications, Notification


class NotificationsController(Controller):
    path = "/api/v1/notifications"
    tags = ["notifications"]

    @get("", summary="The caller's notifications, newest first")
    async def list_notifications(
        self,
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[Notification]:
        return await bus.ask(ListNotifications(limit=limit), principal=principal)


#: The public routes of notifications, served by whichever process hosts the public API.
routes = [NotificationsController]

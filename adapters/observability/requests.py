"""One log line per HTTP request: method, route, status, duration and the signed-in user.

The route is the template (``/api/v1/orders/{order_id:str}``), not the path, and nothing of
the request's headers, query or body is logged: tokens, passwords and payment tokens travel
there. The user is the principal the authentication middleware found (its id only).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters.observability.logs import FIELDS

log = logging.getLogger("cleave.http.requests")

#: Probes and scrapes come every few seconds and say nothing about the users' traffic.
_UNLOGGED = ("/health/", "/metrics")


def request_log(app: ASGIApp) -> ASGIApp:
    """Litestar middleware that logs each HTTP request once it has been answered."""

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope  # an HTTP scope once its type says so: method, path, user
        if http["type"] != "http" or http["path"].startswith(_UNLOGGED):
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            if log.isEnabledFor(logging.INFO):
                route = http.get("path_template") or http["path"]
                log.info(
                    "%s %s %d",
                    http["method"],
                    route,
                    status,
                    extra={
                        FIELDS: {
                            "method": http["method"],
                            "route": route,
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                            "user_id": _user_id(http.get("user")),
                        }
                    },
                )

    return logged


def _user_id(user: Any) -> str | None:
    # The principal of a user's token; a service's or no principal logs no user.
    if getattr(user, "kind", None) == "user":
        return str(user.subject)
    return None

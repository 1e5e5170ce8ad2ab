"""A deadline for each part of a request body: a client that stops sending halfway through
gets a 408 and its connection closed, instead of holding the request (and its socket) for
as long as it likes. The server bounds the request head (``adapters.http.server``); the app
is the one that knows when it waits for the body, so the app bounds that wait."""

from __future__ import annotations

import asyncio

from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_408_REQUEST_TIMEOUT
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooSlow(HTTPException):
    status_code = HTTP_408_REQUEST_TIMEOUT


def body_deadline(seconds: float) -> object:
    """Litestar middleware: every wait for the next part of the body lasts ``seconds`` at most."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return

            body_done = False

            async def receive_in_time() -> Message:
                nonlocal body_done
                if body_done:  # after the body, receive() waits for a disconnect: unbounded
                    return await receive()
                try:
                    async with asyncio.timeout(seconds):
                        message = await receive()
                except TimeoutError:
                    raise BodyTooSlow(
                        detail=f"the request body did not arrive within {seconds:g} s",
                        headers={"Connection": "close"},
                    ) from None
                body_done = message["type"] != "http.request" or not message.get("more_body")
                return message

            await app(scope, receive_in_time, send)

        return bounded

    return middleware

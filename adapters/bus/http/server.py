"""The receiving side of the HTTP transport: a module service's internal endpoints.

``POST /internal/v1/requests`` runs a command or query of a module hosted here;
``POST /internal/v1/deliveries/{module}`` delivers an event or deferred command to one. The
body is a frame (envelope and message) in MessagePack or JSON, as the content type says, and
the answer is the ``Receiver``'s reply in the same format, always with status 200: a typed
error is an answer too. Only requests signed by a service of the deployment get that far;
anything else is a 401 problem and a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Litestar, Request, Response, Router, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath

from adapters.bus.http.client import DELIVERIES_PATH, MEDIA_TYPES, REQUESTS_PATH
from adapters.bus.http.signing import SignatureRefused, Verifier
from kernel.receiver import Receiver

log = logging.getLogger("cleave.http.internal")

#: The receiving side of this process, by media type; None until the runtime started.
Receivers = Callable[[], Mapping[str, Receiver] | None]

#: Internal frames may be larger than public request bodies (a list of order lines...).
MAX_FRAME_BYTES = 4 * 1024 * 1024


def internal_router(receivers: Receivers, verifier: Verifier, hosted: frozenset[str]) -> Router:
    """The internal endpoints of the modules ``hosted`` here."""

    async def receive(request: Request[Any, Any, Any]) -> tuple[Receiver, str, bytes]:
        body = await request.body()
        try:
            caller = verifier.verify(request.method, request.url.path, request.headers, body)
        except SignatureRefused as refused:
            client = request.client.host if request.client else "?"
            log.warning(
                "refused %s %s from %s: %s", request.method, request.url.path, client, refused
            )
            raise NotAuthorizedException(f"not a signed service request: {refused}") from None
        media_type = request.headers.get("content-type", MEDIA_TYPES["json"]).split(";")[0]
        found = receivers()
        if found is None:
            raise NotFoundException("this service is not ready yet")
        receiver = found.get(media_type)
        if receiver is None:
            raise NotAuthorizedException(f"{caller}: unsupported content type {media_type}")
        return receiver, media_type, body

    @post(
        REQUESTS_PATH,
        exclude_from_auth=True,
        include_in_schema=False,
        request_max_body_size=MAX_FRAME_BYTES,
        status_code=200,
    )
    async def requests(request: Request[Any, Any, Any]) -> Response[bytes]:
        receiver, media_type, body = await receive(request)
        return Response(await receiver.request(body), media_type=media_type)

    @post(
        DELIVERIES_PATH.replace("{module}", "{module:str}"),
        exclude_from_auth=True,
        include_in_schema=False,
        request_max_body_size=MAX_FRAME_BYTES,
        status_code=200,
    )
    async def deliveries(request: Request[Any, Any, Any], module: FromPath[str]) -> Response[bytes]:
        receiver, media_type, body = await receive(request)
        if module not in hosted:
            raise NotFoundException(f"module {module!r} does not run in this service")
        return Response(await receiver.deliver(module, body), media_type=media_type)

    return Router(path="/", route_handlers=[requests, deliveries])


def internal_app(receivers: Receivers, verifier: Verifier, hosted: frozenset[str]) -> Litestar:
    """An app that serves only the internal endpoints (tests, and tools that embed one)."""
    from adapters.http.problems import EXCEPTION_HANDLERS

    return Litestar(
        route_handlers=[internal_router(receivers, verifier, hosted)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        logging_config=None,
    )

"""The server side of ``bench.http_clients``: a litestar app with two POST routes.

- ``POST /bare``: a small constant body, the floor of a request.
- ``POST /internal/call``: shaped like a service-to-service call of Cleave. It reads the raw
  body (about 300 bytes of JSON: an envelope with message id, name, correlation id,
  principal and deadline, and a small message), decodes it with msgspec into a typed
  struct, and answers ``{"result": {...}}`` encoded with msgspec, as ``application/json``.

Served by ``uvicorn bench.http_app:app`` in a process of its own (``bench.http_clients``
starts it); ``call_body()`` is the request body the clients send.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, post

from kernel.messages import Envelope, Principal


class Line(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    quantity: int


class ReserveStock(msgspec.Struct, frozen=True, kw_only=True):
    """The message of the call: a small command, as a module would send another."""

    order_id: str
    lines: list[Line]


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/internal/call`` receives: the envelope and the message."""

    envelope: Envelope
    message: ReserveStock


class Reserved(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    reserved: bool
    lines: int


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    result: Reserved


_decode_call = msgspec.json.Decoder(Call).decode
_encode = msgspec.json.Encoder().encode
_BARE = b"ok"


def call_body() -> bytes:
    """The body of one ``/internal/call`` request (about 300 bytes)."""
    call = Call(
        envelope=Envelope(
            message_id="3f2a9c1e5b7d4a60000004d2",
            name="inventory.ReserveStock",
            correlation_id="3f2a9c1e5b7d4a60000004d1",
            principal=Principal(subject="0c6a2f0e9d8b4c1aa1b2c3d4e5f60718", roles=("customer",)),
            deadline=1_767_225_600.25,
        ),
        message=ReserveStock(
            order_id="3f2a9c1e5b7d4a60000004c9",
            lines=[Line(sku="TEA-001", quantity=2)],
        ),
    )
    return _encode(call)


@post("/bare", status_code=200)
async def bare() -> Response[bytes]:
    return Response(_BARE, media_type=MediaType.TEXT)


@post("/internal/call", status_code=200)
async def internal_call(request: Request[Any, Any, Any]) -> Response[bytes]:
    call = _decode_call(await request.body())
    reply = Reply(
        result=Reserved(
            order_id=call.message.order_id, reserved=True, lines=len(call.message.lines)
        )
    )
    return Response(_encode(reply), media_type=MediaType.JSON)


#: No logging configuration: litestar's default would set the root logger to INFO, and in the
#: benchmark process (which imports ``call_body``) httpx would then log every request.
app = Litestar(
    route_handlers=[bare, internal_call], openapi_config=None, logging_config=None, debug=False
)

"""The request head's deadline (``adapters.http.server.guarded_protocol``) bounds only the
wait for a head: a request the app takes long to answer is not cut off, nor is a keep-alive
connection between requests; a head that stops halfway is, on a fresh connection and after
an answered request alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from adapters.http.server import guarded_protocol
from tests.unit.adapters.test_one_send import RecordingTransport

pytestmark = pytest.mark.anyio

DEADLINE = 0.1
#: Long enough past the deadline for a close it would cause to have happened.
PAST = DEADLINE * 3
REQUEST = b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n"


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await asyncio.sleep(PAST)  # longer than the head's deadline
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def connect() -> RecordingTransport:
    config = uvicorn.Config(slow_app, log_config=None, lifespan="off")
    config.load()
    protocol = guarded_protocol(DEADLINE, 100)(
        config=config,
        server_state=ServerState(),
        app_state={},
        _loop=asyncio.get_running_loop(),
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    transport.protocol = protocol  # type: ignore[attr-defined]
    return transport


async def answered(transport: RecordingTransport, count: int) -> None:
    async with asyncio.timeout(5):
        while len(transport.writes) < count:  # noqa: ASYNC110 (the response is the event)
            await asyncio.sleep(0.01)


async def test_a_silent_or_unfinished_head_is_cut_off() -> None:
    silent = connect()
    unfinished = connect()
    unfinished.protocol.data_received(b"GET / HTTP/1.1\r\nHost: sh")  # type: ignore[attr-defined]
    await asyncio.sleep(PAST)
    assert silent.closed and unfinished.closed
    assert silent.writes == unfinished.writes == []


async def test_a_slow_answer_is_not_cut_off() -> None:
    transport = connect()
    transport.protocol.data_received(REQUEST)  # type: ignore[attr-defined]
    await answered(transport, 1)
    assert not transport.closed
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")


async def test_pipelined_requests_are_answered_not_cut_off() -> None:
    transport = connect()
    transport.protocol.data_received(REQUEST + REQUEST)  # type: ignore[attr-defined]
    await answered(transport, 2)
    assert not transport.closed


async def test_between_requests_only_a_started_head_has_a_deadline() -> None:
    transport = connect()
    protocol: Any = transport.protocol  # type: ignore[attr-defined]
    protocol.data_received(REQUEST)
    await answered(transport, 1)
    await asyncio.sleep(PAST)  # keep-alive silence: uvicorn's own timeout (5 s) covers it
    assert not transport.closed
    protocol.data_received(b"GET / HTTP/1.1\r\n")  # the next head, stopping halfway
    await asyncio.sleep(PAST)
    assert transport.closed
    protocol.connection_lost(None)

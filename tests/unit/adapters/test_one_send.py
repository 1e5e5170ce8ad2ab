"""The server sends each response in one write: uvicorn's head and body writes are joined
within the turn of the event loop that made them (``adapters.http.one_send``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from adapters.http.one_send import OneSendTransport
from adapters.http.server import guarded_protocol

pytestmark = pytest.mark.anyio


class RecordingTransport(asyncio.Transport):
    """What a socket would be sent, one entry per ``write``."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first ", "more_body": True})
    await send({"type": "http.response.body", "body": b"second"})


async def test_a_response_leaves_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(app, log_config=None, lifespan="off")
    config.load()
    protocol = guarded_protocol(10.0, 100)(
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for answered in (1, 2):  # two requests on one keep-alive connection
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
        async with asyncio.timeout(5):
            while len(transport.writes) < answered:  # noqa: ASYNC110 (the response is the event)
                await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # anything written later would show now
    assert len(transport.writes) == 2
    for sent in transport.writes:  # head, both chunks of the body, and its end, together
        assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sent.endswith(b"6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n")
    protocol.connection_lost(None)


async def test_what_is_written_before_a_close_is_sent_before_it() -> None:
    transport = RecordingTransport()
    one_send = OneSendTransport(transport, asyncio.get_running_loop())
    one_send.write(b"head ")
    one_send.write(b"")
    one_send.writelines([b"body"])
    assert transport.writes == [] and one_send.get_write_buffer_size() == 9
    one_send.close()
    assert transport.writes == [b"head body"] and transport.closed
    await asyncio.sleep(0)  # the turn's flush finds nothing more to send
    assert transport.writes == [b"head body"]

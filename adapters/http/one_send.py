"""A response leaves in one send: the writes of one turn of the event loop are joined.

uvicorn writes a response's head and its body with a ``transport.write`` each, so every
response cost two ``send`` calls, and on a loopback connection each send also pays for
delivering the segment and waking the reader: about a tenth of the server's CPU per order
(issue 12). ``OneSendTransport`` keeps what is written during one turn of the loop and sends
it together at the end of that turn; nothing waits longer than the turn that wrote it.
"""

from __future__ import annotations

import asyncio
from typing import Any


class OneSendTransport:
    """A transport whose writes within one turn of the loop go out as one ``write``."""

    __slots__ = ("_loop", "_pending", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what this turn wrote (at the end of the turn, or before closing)."""
        pending, self._pending = self._pending, None
        if pending:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        held = sum(len(data) for data in self._pending) if self._pending else 0
        return self.transport.get_write_buffer_size() + held

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading...) is the transport's.
        return getattr(self.transport, name)

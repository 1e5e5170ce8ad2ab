"""The loopback transport: in one process, but everything crosses the wire codec.

Each envelope and message is encoded and handed, as bytes, to the same ``Receiver`` the HTTP
and Redis transports use; the reply comes back as bytes and is decoded, exactly as from
another process. A message that cannot cross a process boundary, or an error that would lose
its type, fails here, before the app is ever split.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from kernel.bus import Call
from kernel.codec import Codec
from kernel.messages import Envelope, Message
from kernel.receiver import Receiver


class LoopbackTransport:
    """Runs local handlers through the wire codec, each call bound to its target at set-up."""

    def __init__(self, receiver: Receiver, codec: Codec) -> None:
        self._receiver = receiver
        self._codec = codec

    def requester(self, module: str, message: type[Message]) -> Call:
        return self._through_wire(self._receiver.request)

    def deliverer(self, module: str) -> Call:
        return self._through_wire(functools.partial(self._receiver.deliver, module))

    def _through_wire(self, receive: Callable[[bytes], Awaitable[bytes]]) -> Call:
        """A call that encodes its message, has ``receive`` run it, and decodes the reply."""
        codec = self._codec

        async def call(message: Message, envelope: Envelope) -> Any:
            reply = await receive(codec.encode(envelope, message))
            return codec.decode_reply(reply, type(message))

        return call

"""The loopback transport: in one process, but everything crosses the wire codec.

Each envelope and message is encoded and handed, as bytes, to the same ``Receiver`` the HTTP
and Redis transports use; the reply comes back as bytes and is decoded, exactly as from
another process. A message that cannot cross a process boundary, or an error that would lose
its type, fails here, before the app is ever split.
"""

from __future__ import annotations

from typing import Any

from kernel.bus import Call
from kernel.codec import Codec
from kernel.messages import Envelope, Message
from kernel.receiver import Receiver


class LoopbackTransport:
    """Runs local handlers through the wire codec."""

    def __init__(self, receiver: Receiver, codec: Codec) -> None:
        self._receiver = receiver
        self._codec = codec

    def requester(self, module: str, message: type[Message]) -> Call:
        codec, request = self._codec, self._receiver.request

        async def call(message: Message, envelope: Envelope) -> Any:
            reply = await request(codec.encode(envelope, message))
            return codec.decode_reply(reply, type(message))

        return call

    def deliverer(self, module: str) -> Call:
        codec, deliver = self._codec, self._receiver.deliver

        async def call(message: Message, envelope: Envelope) -> Any:
            reply = await deliver(module, codec.encode(envelope, message))
            return codec.decode_reply(reply, type(message))

        return call

"""The loopback transport: in one process, but everything crosses the wire codec.

Each envelope and message is encoded and decoded on its way in, and each result or error on
its way back, exactly as over HTTP or a Redis queue. A message that cannot cross a process
boundary, or an error that would lose its type, fails here, before the app is ever split.
"""

from __future__ import annotations

import logging
from typing import Any

from kernel.bus import Call
from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.errors import CleaveError
from kernel.messages import Envelope, Message
from kernel.registry import Endpoint

log = logging.getLogger("cleave.loopback")


class LoopbackTransport:
    """Runs local endpoints through the wire codec."""

    def __init__(self, dispatcher: Dispatcher, codec: Codec) -> None:
        self._dispatcher = dispatcher
        self._codec = codec

    def requester(self, endpoint: Endpoint) -> Call:
        return self._call(endpoint, once=False)

    def deliverer(self, endpoint: Endpoint) -> Call:
        return self._call(endpoint, once=True)

    def _call(self, endpoint: Endpoint, *, once: bool) -> Call:
        local = self._dispatcher.endpoint(endpoint.name)
        handle = self._dispatcher.handle
        codec = self._codec
        cls = endpoint.message

        async def call(message: Message, envelope: Envelope) -> Any:
            frame = codec.encode(envelope, message)
            # ---- what the receiving process does --------------------------------------
            received_envelope, received_message = codec.decode(frame)
            try:
                result = await handle(local, received_message, received_envelope, once=once)
            except CleaveError as error:
                reply = codec.encode_error(error)
            except Exception as error:
                log.exception("%s failed in %s", received_envelope.name, endpoint.name)
                reply = codec.encode_error(error)
            else:
                reply = codec.encode_result(result)
            # ---- back in the calling process ------------------------------------------
            return codec.decode_reply(reply, cls)

        return call

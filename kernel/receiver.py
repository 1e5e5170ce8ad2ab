"""The receiving side shared by every transport that crosses the wire.

A transport only carries bytes: an HTTP body, a Redis job, or (loopback) a buffer that never
leaves the process. What it carries in is a frame (envelope and message, ``Codec.encode``);
what it carries back is a reply (a result, or a typed error, ``Codec.encode_result`` and
``Codec.encode_error``). Decoding, dispatching and encoding the answer happen here, once, so
that a message behaves the same whichever transport brought it.
"""

from __future__ import annotations

import logging

from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.errors import CleaveError, PoisonMessage

log = logging.getLogger("cleave.receiver")


class Receiver:
    """Turns a frame into a reply by running the local handler it names."""

    def __init__(self, dispatcher: Dispatcher, codec: Codec) -> None:
        self.dispatcher = dispatcher
        self.codec = codec

    async def request(self, frame: bytes) -> bytes:
        """Run a command or query; the reply holds its result or its typed error."""
        try:
            envelope, message = self.codec.decode(frame)
            result = await self.dispatcher.request(message, envelope, "wire")
        except (CleaveError, PoisonMessage) as error:
            return self.codec.encode_error(error)
        except Exception as error:
            log.exception("a request failed unexpectedly")
            return self.codec.encode_error(error)
        return self.codec.encode_result(result)

    async def deliver(self, module: str, frame: bytes) -> bytes:
        """Deliver an event or deferred command to hosted ``module``'s handlers.

        A poison frame (undecodable, unknown name, other version) comes back as a poison
        error, which the sender dead-letters at once instead of trying again.
        """
        try:
            envelope, message = self.codec.decode(frame)
            await self.dispatcher.deliver(module, message, envelope, "wire")
        except (CleaveError, PoisonMessage) as error:
            return self.codec.encode_error(error)
        except Exception as error:
            log.exception("a delivery to %s failed unexpectedly", module)
            return self.codec.encode_error(error)
        return self.codec.encode_result(None)

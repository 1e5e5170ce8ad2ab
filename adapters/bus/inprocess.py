"""The in-process transport: a direct call of the handler, no serialization on the way."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from kernel.bus import Call
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, Message
from kernel.registry import Endpoint


class InProcessTransport:
    """Runs endpoints of modules hosted in this process by calling them directly."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def requester(self, endpoint: Endpoint) -> Call:
        return self._call(endpoint, once=False)

    def deliverer(self, endpoint: Endpoint) -> Call:
        return self._call(endpoint, once=True)

    def _call(self, endpoint: Endpoint, *, once: bool) -> Call:
        local = self._dispatcher.endpoint(endpoint.name)
        handle = self._dispatcher.handle

        # A plain function that returns the handler's coroutine: a functools.partial with a
        # keyword argument builds a dict on every call, which cost more than this frame.
        def call(message: Message, envelope: Envelope) -> Awaitable[Any]:
            return handle(local, message, envelope, once=once)

        return call

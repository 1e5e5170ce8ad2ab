"""The in-process transport: a direct call of the handler, no serialization on the way."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from kernel.bus import Call
from kernel.dispatch import Dispatcher
from kernel.messages import Envelope, Message


class InProcessTransport:
    """Runs handlers of modules hosted in this process by calling them directly."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def requester(self, module: str, message: type[Message]) -> Call:
        local = self._dispatcher.handler_of(message)
        handle = self._dispatcher.handle

        # A plain function that returns the handler's coroutine: a functools.partial with a
        # keyword argument builds a dict on every call, which cost more than this frame.
        def call(message: Message, envelope: Envelope) -> Awaitable[Any]:
            return handle(local, message, envelope, once=False)

        return call

    def deliverer(self, module: str) -> Call:
        deliver = self._dispatcher.deliver

        def call(message: Message, envelope: Envelope) -> Awaitable[None]:
            return deliver(module, message, envelope)

        return call

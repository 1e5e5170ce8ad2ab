"""The in-process transport: a direct call of the handler, no serialization on the way."""

from __future__ import annotations

import functools

from kernel.bus import Call
from kernel.dispatch import Dispatcher
from kernel.messages import Message


class InProcessTransport:
    """Runs handlers of modules hosted in this process by calling the dispatcher directly.

    Like every local transport (see ``loopback``), each call is bound to its target once, at
    set-up: the handler of a command or query, the module of a delivery.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def requester(self, module: str, message: type[Message]) -> Call:
        # A partial with positional arguments only: one with a keyword builds a dict per call.
        return functools.partial(self._dispatcher.handle, self._dispatcher.handler_of(message))

    def deliverer(self, module: str) -> Call:
        return functools.partial(self._dispatcher.deliver, module)

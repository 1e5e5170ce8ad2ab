"""The trivial module's declaration: no tables, so it runs on in-memory storage."""

from __future__ import annotations

from bench.trivial import contracts, handlers
from kernel import Module

module = Module(
    name="bench",
    contracts=contracts,
    handlers={contracts.Ping: handlers.ping, contracts.Peek: handlers.peek},
)

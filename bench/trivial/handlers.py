"""Handlers that do nothing but answer, so that what is timed is the bus around them."""

from __future__ import annotations

from bench.trivial.contracts import Peek, Ping


async def ping(command: Ping) -> int:
    return 1


async def peek(query: Peek) -> int:
    return 1

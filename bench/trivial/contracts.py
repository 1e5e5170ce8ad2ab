"""The trivial module's messages: a command and a query that carry one small field."""

from __future__ import annotations

from kernel import Command, Query


class Ping(Command[int], frozen=True, kw_only=True, tag="bench.Ping"):
    """A command whose handler returns a constant."""

    n: int = 0


class Peek(Query[int], frozen=True, kw_only=True, tag="bench.Peek"):
    """A query whose handler returns a constant."""

    n: int = 0

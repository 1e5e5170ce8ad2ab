"""Customers waiting for their orders to settle, woken in this process when one settles.

A ``GetOrder`` with ``wait_seconds`` parks here between two reads of the order instead of
polling the database. The saga wakes the order's waiters once the transition that settled it
has committed (``Transaction.after_commit``), so a woken waiter reads the terminal order.
Only the instance that settled the order can wake them: a waiter looks at the database again
every ``recheck_seconds`` as well, so an order settled by another instance of ordering is seen
within that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from kernel import Transaction


class OrderWaiters:
    """The waiters of each order in this process, one ``asyncio.Event`` each."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def wake_after_commit(self, order_id: str) -> None:
        """Wake the waiters of ``order_id`` once the current unit of work has committed."""
        self._transaction.after_commit(lambda: self.wake(order_id))

    def wake(self, order_id: str) -> None:
        for event in self._waiting.get(order_id, ()):
            event.set()

    @contextmanager
    def watch(self, order_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``order_id`` settles in this process, for as long as the
        block runs. Clear it before reading the order, then wait for it: a settlement that
        commits after the read is never missed."""
        event = asyncio.Event()
        self._waiting.setdefault(order_id, set()).add(event)
        try:
            yield event
        finally:
            others = self._waiting[order_id]
            others.discard(event)
            if not others:
                del self._waiting[order_id]

    def __len__(self) -> int:
        """How many orders someone waits for."""
        return len(self._waiting)

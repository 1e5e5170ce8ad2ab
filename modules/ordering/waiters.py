"""Customers waiting for their orders to settle, woken in this process when one settles.

A ``GetOrder`` with ``wait_seconds`` parks here after a read of the order instead of
polling the database. The saga wakes the order's waiters once the transition that settled it
has committed (``Transaction.after_commit``), and hands them the order as it committed it:
a woken waiter answers with that, without reading the order again. Only the instance that
settled the order can wake them: a waiter looks at the database again every
``recheck_seconds`` as well, so an order settled by another instance of ordering is seen
within that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from kernel import Transaction
from modules.ordering.domain import Order


class Watch:
    """One waiter's view of an order: set when it settles, with the order as settled."""

    __slots__ = ("settled", "woken")

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        #: The order as the unit of work that settled it committed it, once it has.
        self.settled: Order | None = None


class OrderWaiters:
    """The waiters of each order in this process, one ``Watch`` each."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._waiting: dict[str, set[Watch]] = {}

    def wake_after_commit(self, order: Order) -> None:
        """Hand ``order`` (settled) to its waiters once the current unit of work has
        committed it."""
        self._transaction.after_commit(lambda: self.wake(order))

    def wake(self, order: Order) -> None:
        for watch in self._waiting.get(order.id, ()):
            watch.settled = order
            watch.woken.set()

    @contextmanager
    def watch(self, order_id: str) -> Iterator[Watch]:
        """A ``Watch`` of ``order_id`` in this process, for as long as the block runs. Clear
        its event before reading the order, then wait for it: a settlement that commits
        after the read is never missed."""
        watch = Watch()
        self._waiting.setdefault(order_id, set()).add(watch)
        try:
            yield watch
        finally:
            others = self._waiting[order_id]
            others.discard(watch)
            if not others:
                del self._waiting[order_id]

    def __len__(self) -> int:
        """How many orders someone waits for."""
        return len(self._waiting)

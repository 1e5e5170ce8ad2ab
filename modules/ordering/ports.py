"""What ordering needs from the composition root besides its messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrderingSettings:
    """Ordering's settings, bound by the composition root (from ``order_timeout_seconds``).

    When nothing binds it, ``register`` binds these defaults.
    """

    #: An order whose saga still waits for stock or payment after this long is compensated.
    order_timeout_seconds: float = 60.0
    #: How many overdue sagas one ExpireOrders compensates (the timer runs it again soon).
    expire_batch: int = 100

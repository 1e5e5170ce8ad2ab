"""What ordering needs from the composition root besides its messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrderingSettings:
    """Ordering's settings, bound by the composition root (from the ``CLEAVE_*`` settings).

    When nothing binds it, ``register`` binds these defaults.
    """

    #: An order whose saga still waits for stock or payment after this long is compensated.
    order_timeout_seconds: float = 60.0
    #: How many overdue sagas one ExpireOrders compensates (the timer runs it again soon).
    expire_batch: int = 100
    #: The most PENDING orders one customer may have at once.
    max_open_orders: int = 20
    #: The most orders one customer may place in any minute.
    orders_per_minute: int = 60
    #: How long a customer's idempotency key is kept (at least a day: clients retry for hours).
    idempotency_key_seconds: float = 86_400.0
    #: How many expired idempotency keys one ForgetIdempotencyKeys deletes.
    forget_batch: int = 1_000
    #: A ``GetOrder`` that waits reads the order again this often even if nothing woke it:
    #: another instance of ordering may have settled it (only the settling one wakes).
    wait_recheck_seconds: float = 1.0
    #: How long a price the catalog gave is used for new orders (the catalog's events move it
    #: forward meanwhile); 0 asks the catalog for every order (ADR 0018).
    price_cache_seconds: float = 30.0

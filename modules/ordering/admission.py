"""Whether a customer's new order is placed, in plain Python: a retry under a known
idempotency key gets the first order back, and a customer's orders are limited in number
(unsettled at once) and in pace (per minute)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

#: Why an order is not admitted.
KEY_REUSED = "key_reused"
TOO_MANY_OPEN = "too_many_open"
TOO_FAST = "too_fast"

#: The window of ``orders_per_minute``, in seconds.
MINUTE = 60.0


class NotAdmitted(Exception):
    """The order is refused; ``code`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class KnownKey:
    """An idempotency key a customer used: what they sent under it, and the order it placed."""

    fingerprint: str
    order_id: str


def fingerprint(lines: list[tuple[str, int]], payment_token: str) -> str:
    """A digest of an order as sent: equal for a retry of it, different for any other order.

    A digest rather than the order itself, so that no payment token is kept with the key.
    """
    canonical = json.dumps([lines, payment_token], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def retried_order(known: KnownKey | None, sent: str) -> str | None:
    """The id of the order this request repeats (``sent`` is its fingerprint), or None for a
    new order; ``NotAdmitted`` when the key was used for another order."""
    if known is None:
        return None
    if known.fingerprint != sent:
        raise NotAdmitted(
            KEY_REUSED,
            "this Idempotency-Key was used for another order: "
            "send a new key for a new order, or the same order to retry it",
        )
    return known.order_id


def check_limits(
    *, open_orders: int, max_open_orders: int, recent_orders: int, orders_per_minute: int
) -> None:
    """Refuse a new order past either limit: ``open_orders`` PENDING now, ``recent_orders``
    placed in the last minute."""
    if open_orders >= max_open_orders:
        raise NotAdmitted(
            TOO_MANY_OPEN,
            f"you have {open_orders} orders still pending, the most one may have: "
            "place this one once some of them are settled",
        )
    if recent_orders >= orders_per_minute:
        raise NotAdmitted(
            TOO_FAST,
            f"you placed {recent_orders} orders in the last minute, the most one may: "
            "try again within a minute",
        )

"""Notifications' rules, in plain Python: what the shop tells a user, and when.

Each notification answers one fact (an order confirmed, a user registered) and is keyed by
that fact, so a fact told twice (an event delivered again) is one notification. Why an order
ended is told in plain words, from ordering's reason codes only: whatever else a reason
holds is never shown to the customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modules.ordering.contracts import (
    REASON_INSUFFICIENT_STOCK,
    REASON_PAYMENT_DECLINED,
    REASON_PAYMENT_FAILED,
    REASON_TIMEOUT,
    REASON_UNKNOWN_SKU,
)

#: Each reason code an order may end with, in the customer's words.
_PLAIN_REASONS = {
    REASON_PAYMENT_DECLINED: "the payment was declined",
    REASON_PAYMENT_FAILED: "the payment could not be processed",
    REASON_TIMEOUT: "it could not be completed in time",
    REASON_INSUFFICIENT_STOCK: "not enough stock",
    REASON_UNKNOWN_SKU: "a product is no longer sold",
}
#: The reasons followed by the SKU they are about.
_ABOUT_A_PRODUCT = (REASON_INSUFFICIENT_STOCK, REASON_UNKNOWN_SKU)
#: For a reason this module does not know (a newer code, or one that is not a code).
_NO_PLAIN_REASON = "it could not be completed"


class Kind(StrEnum):
    WELCOME = "welcome"
    ORDER_CONFIRMED = "order_confirmed"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_REJECTED = "order_rejected"


@dataclass(frozen=True)
class Notification:
    id: str
    recipient_id: str
    kind: Kind
    #: What the notification is about (an order id, a user id): one notification per
    #: (kind, about).
    about: str
    subject: str
    body: str
    created_at: float
    order_id: str | None = None


@dataclass(frozen=True)
class Message:
    """The words of a notification, before it is addressed and stored."""

    kind: Kind
    about: str
    subject: str
    body: str
    order_id: str | None = None


def welcome(user_id: str, name: str) -> Message:
    return Message(
        kind=Kind.WELCOME,
        about=user_id,
        subject="Welcome to the shop",
        body=f"Hello {name}, your account is ready. Happy shopping!",
    )


def order_confirmed(order_id: str, total_cents: int, currency: str) -> Message:
    return Message(
        kind=Kind.ORDER_CONFIRMED,
        about=order_id,
        order_id=order_id,
        subject="Your order is confirmed",
        body=f"Order {order_id} is confirmed; {money(total_cents, currency)} was charged.",
    )


def order_cancelled(order_id: str, reason: str) -> Message:
    return Message(
        kind=Kind.ORDER_CANCELLED,
        about=order_id,
        order_id=order_id,
        subject="Your order was cancelled",
        body=f"Order {order_id} was cancelled: {plain_reason(reason)}. "
        "Nothing was charged and nothing will ship.",
    )


def order_rejected(order_id: str, reason: str) -> Message:
    return Message(
        kind=Kind.ORDER_REJECTED,
        about=order_id,
        order_id=order_id,
        subject="Your order could not be accepted",
        body=f"Order {order_id} could not be accepted: {plain_reason(reason)}. "
        "Nothing was charged.",
    )


def plain_reason(reason: str) -> str:
    """Ordering's ``reason`` (``"payment_failed"``, ``"insufficient_stock: TEA"``) in plain
    words; what follows the code is kept only where it is the customer's own (the SKU)."""
    code, _, detail = (part.strip() for part in reason.partition(":"))
    plain = _PLAIN_REASONS.get(code)
    if plain is None:
        return _NO_PLAIN_REASON
    return f"{plain} ({detail})" if detail and code in _ABOUT_A_PRODUCT else plain


def money(cents: int, currency: str) -> str:
    """``1234, "EUR"`` as ``"12.34 EUR"``."""
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 100)
    return f"{sign}{whole}.{fraction:02d} {currency}"

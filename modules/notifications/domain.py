"""Notifications' rules, in plain Python: what the shop tells a user, and when.

Each notification answers one fact (an order confirmed, a user registered) and is keyed by
that fact, so a fact told twice (an event delivered again) is one notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
        body=f"Order {order_id} was cancelled ({reason or 'no reason given'}). "
        "Nothing was charged and nothing will ship.",
    )


def order_rejected(order_id: str, reason: str) -> Message:
    return Message(
        kind=Kind.ORDER_REJECTED,
        about=order_id,
        order_id=order_id,
        subject="Your order could not be accepted",
        body=f"Order {order_id} was rejected ({reason or 'no reason given'}). Nothing was charged.",
    )


def money(cents: int, currency: str) -> str:
    """``1234, "EUR"`` as ``"12.34 EUR"``."""
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 100)
    return f"{sign}{whole}.{fraction:02d} {currency}"

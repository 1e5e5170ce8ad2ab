"""Payments: charges captured from the outside payment provider for orders.

Each order is charged with the order id as idempotency key, so a retried capture never
charges twice. ``CapturePayment`` answers with exactly one of ``PaymentCaptured``,
``PaymentDeclined`` (the provider said no) or ``PaymentFailed`` (the provider could not be
reached in time, or its circuit is open). ``VoidPayment`` cancels whatever the provider holds
for an order, including a capture still in flight.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from kernel import Command, Event, Query
from modules.catalog.contracts import Currency

OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AmountCents = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
PaymentToken = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="A token from the payment provider. Sandbox: tok_ok, tok_declined, "
        "tok_error, tok_slow.",
        examples=["tok_ok"],
    ),
]
ChargeStatus = Literal["CAPTURED", "DECLINED", "FAILED", "VOIDED"]

#: Error codes a caller may see.
NOT_ALLOWED = "payments.not_allowed"
#: The payment provider could not answer (timeout, 5xx, unreachable, or its circuit is open).
PROVIDER_UNAVAILABLE = "payments.provider_unavailable"


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to charge an order, as the payments module recorded it."""

    id: str
    order_id: OrderId
    amount_cents: AmountCents
    currency: Currency
    status: ChargeStatus
    provider_charge_id: str | None = None
    reason: str | None = None
    created_at: float


class CapturePayment(Command[None], frozen=True, kw_only=True, tag="payments.CapturePayment"):
    partition_key = "order_id"

    order_id: OrderId
    amount_cents: AmountCents
    currency: Currency
    payment_token: PaymentToken


class VoidPayment(Command[None], frozen=True, kw_only=True, tag="payments.VoidPayment"):
    """Cancel any capture of this order at the provider (compensation). Answers with
    ``PaymentVoided``."""

    partition_key = "order_id"
    # A compensation: it keeps trying while the other side is down or its circuit open.
    retry_forever = True

    order_id: OrderId


class GetCharges(Query[list[Charge]], frozen=True, kw_only=True, tag="payments.GetCharges"):
    """The charges recorded for an order, oldest first. Admins only."""

    order_id: OrderId


class PaymentCaptured(Event, frozen=True, kw_only=True, tag="payments.PaymentCaptured"):
    partition_key = "order_id"

    order_id: OrderId
    charge_id: str
    amount_cents: AmountCents
    currency: Currency


class PaymentDeclined(Event, frozen=True, kw_only=True, tag="payments.PaymentDeclined"):
    partition_key = "order_id"

    order_id: OrderId
    reason: str


class PaymentFailed(Event, frozen=True, kw_only=True, tag="payments.PaymentFailed"):
    partition_key = "order_id"

    order_id: OrderId
    reason: str


class PaymentVoided(Event, frozen=True, kw_only=True, tag="payments.PaymentVoided"):
    partition_key = "order_id"

    order_id: OrderId

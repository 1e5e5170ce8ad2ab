"""Payments' rules, in plain Python: the charges of an order and what they settle.

An order is charged at most once: its charges are any number of FAILED attempts (the provider
could not answer) followed by at most one settled charge, CAPTURED, DECLINED or VOIDED. Once
settled, the answer for the order never changes, except that a void turns CAPTURED into VOIDED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

#: The currency of a charge recorded without an amount (a void before any capture):
#: ISO 4217 "no currency involved".
NO_CURRENCY = "XXX"


class ChargeStatus(StrEnum):
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    VOIDED = "VOIDED"


#: The provider's answer to a capture, as the payments module records it.
_ANSWERS = {
    "captured": ChargeStatus.CAPTURED,
    "declined": ChargeStatus.DECLINED,
    "voided": ChargeStatus.VOIDED,
}


@dataclass(frozen=True)
class Charge:
    """One attempt to charge an order."""

    id: str
    order_id: str
    amount_cents: int
    currency: str
    status: ChargeStatus
    created_at: float
    provider_charge_id: str | None = None
    reason: str | None = None

    @property
    def settled(self) -> bool:
        """Whether this charge is the order's final answer (anything but a failed attempt)."""
        return self.status is not ChargeStatus.FAILED

    def voided(self) -> Charge:
        """This captured charge, cancelled at the provider."""
        if self.status is not ChargeStatus.CAPTURED:
            raise ValueError(f"only a captured charge can be voided, not a {self.status.value} one")
        return replace(self, status=ChargeStatus.VOIDED, reason="voided after capture")


def status_of_answer(answer: str) -> ChargeStatus:
    """The status recording the provider's answer ("captured", "declined" or "voided")."""
    try:
        return _ANSWERS[answer]
    except KeyError:
        raise ValueError(f"unknown provider answer {answer!r}") from None


def settled_charge(charges: Sequence[Charge]) -> Charge | None:
    """The order's settled charge, if it has one."""
    return next((charge for charge in charges if charge.settled), None)


def void_record(charges: Sequence[Charge], *, charge_id: str, order_id: str, now: float) -> Charge:
    """The VOIDED charge that records a void of an order that has no settled charge.

    It carries the amount of the last failed attempt, if there was one, so that the history
    reads naturally; otherwise nothing was ever asked for, and it says so.
    """
    last = charges[-1] if charges else None
    return Charge(
        id=charge_id,
        order_id=order_id,
        amount_cents=last.amount_cents if last else 0,
        currency=last.currency if last else NO_CURRENCY,
        status=ChargeStatus.VOIDED,
        created_at=now,
        reason="voided before capture",
    )

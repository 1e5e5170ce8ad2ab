"""Payments' handlers: capture and void at the provider, and the charges of an order.

The idempotency key sent to the provider is the order id, so that a capture retried by a
relay, rerun after a lost race, or repeated by the saga never charges twice. The provider is
called after reading and before writing: with SQLite a write takes the process's writer gate,
and a provider call may take seconds.
"""

from __future__ import annotations

from kernel import Bus, Clock, Forbidden, Principal, Unavailable, new_entity_id
from modules.payments import domain
from modules.payments.contracts import (
    NOT_ALLOWED,
    CapturePayment,
    Charge,
    GetCharges,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
    VoidPayment,
)
from modules.payments.domain import ChargeStatus
from modules.payments.ports import PaymentProvider
from modules.payments.repository import Charges


async def capture_payment(
    command: CapturePayment,
    charges: Charges,
    provider: PaymentProvider,
    bus: Bus,
    clock: Clock,
) -> None:
    """Charge the order once; answer PaymentCaptured, PaymentDeclined or PaymentFailed."""
    history = await charges.of_order(command.order_id)
    settled = domain.settled_charge(history)
    if settled is not None:
        await bus.publish(_outcome(settled))  # the same question gets the same answer
        return
    provider_charge_id: str | None = None
    reason: str | None
    try:
        answer = await provider.capture(
            idempotency_key=command.order_id,
            amount_cents=command.amount_cents,
            currency=command.currency,
            token=command.payment_token,
        )
    except Unavailable as error:
        # Not an answer: record the attempt and say so; the saga compensates (and a later
        # capture of this order may still succeed).
        status, reason = ChargeStatus.FAILED, error.detail
    else:
        status = domain.status_of_answer(answer.status)
        provider_charge_id = answer.provider_charge_id
        reason = answer.reason
    charge = domain.Charge(
        id=new_entity_id(),
        order_id=command.order_id,
        amount_cents=command.amount_cents,
        currency=command.currency,
        status=status,
        created_at=clock.now(),
        provider_charge_id=provider_charge_id,
        reason=reason,
    )
    await charges.add(charge)
    await bus.publish(_outcome(charge))


async def void_payment(
    command: VoidPayment,
    charges: Charges,
    provider: PaymentProvider,
    bus: Bus,
    clock: Clock,
) -> None:
    """Cancel whatever the provider holds for the order (compensation); answer PaymentVoided.

    Raises ``Unavailable`` when the provider cannot be reached: the relay tries again later.
    """
    history = await charges.of_order(command.order_id)
    settled = domain.settled_charge(history)
    if settled is None or settled.status is not ChargeStatus.VOIDED:
        # Also when nothing is recorded: a capture may be in flight at the provider.
        await provider.void(idempotency_key=command.order_id)
    if settled is None:
        await charges.add(
            domain.void_record(
                history, charge_id=new_entity_id(), order_id=command.order_id, now=clock.now()
            )
        )
    elif settled.status is ChargeStatus.CAPTURED:
        await charges.save_voided(settled.voided())
    await bus.publish(PaymentVoided(order_id=command.order_id))


async def get_charges(
    query: GetCharges, charges: Charges, principal: Principal | None
) -> list[Charge]:
    if principal is None or not principal.administers:
        raise Forbidden("only an admin may read the charges of an order", code=NOT_ALLOWED)
    return [_view(charge) for charge in await charges.of_order(query.order_id)]


def _outcome(charge: domain.Charge) -> PaymentCaptured | PaymentDeclined | PaymentFailed:
    if charge.status is ChargeStatus.CAPTURED:
        return PaymentCaptured(
            order_id=charge.order_id,
            charge_id=charge.id,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
        )
    if charge.status is ChargeStatus.DECLINED:
        return PaymentDeclined(order_id=charge.order_id, reason=charge.reason or "declined")
    if charge.status is ChargeStatus.VOIDED:
        return PaymentFailed(order_id=charge.order_id, reason="voided")
    return PaymentFailed(order_id=charge.order_id, reason=charge.reason or "failed")


def _view(charge: domain.Charge) -> Charge:
    return Charge(
        id=charge.id,
        order_id=charge.order_id,
        amount_cents=charge.amount_cents,
        currency=charge.currency,
        status=charge.status.value,
        provider_charge_id=charge.provider_charge_id,
        reason=charge.reason,
        created_at=charge.created_at,
    )

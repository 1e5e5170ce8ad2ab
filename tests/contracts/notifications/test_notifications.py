"""Notifications through the bus: one message per fact told, to its recipient only."""

from __future__ import annotations

import pytest

from kernel import Principal, Transaction, Unauthenticated
from kernel.messages import message_name, new_envelope
from modules.identity.contracts import UserRegistered
from modules.notifications import domain
from modules.notifications.contracts import ListNotifications, Notification
from modules.notifications.repository import Notifications
from modules.ordering.contracts import OrderCancelled, OrderConfirmed, OrderRejected
from tests.support.harness import running_shop

#: Only notifications runs here; the rest of the shop is declared (its contracts are checked)
#: but not hosted, so its events can be told directly.
HOSTED = ["notifications"]

ADA = Principal(subject="user-ada", roles=("customer",))
BOB = Principal(subject="user-bob", roles=("customer",))


def subjects(notifications: list[Notification]) -> list[str]:
    return sorted(item.subject for item in notifications)


@pytest.mark.anyio
async def test_each_fact_is_told_once_to_its_recipient(sqlite_url: str, transport: str) -> None:
    async with running_shop(sqlite_url, transport=transport, hosted=HOSTED) as runtime:
        bus = runtime.bus
        confirmed = OrderConfirmed(
            order_id="o-1", customer_id=ADA.subject, total_cents=1234, currency="EUR"
        )
        await bus.publish(UserRegistered(user_id=ADA.subject, email="ada@example.com", name="Ada"))
        await bus.publish(confirmed)
        await bus.publish(
            OrderCancelled(order_id="o-2", customer_id=ADA.subject, reason="payment_declined")
        )
        await bus.publish(
            OrderRejected(order_id="o-3", customer_id=BOB.subject, reason="insufficient_stock")
        )
        # The same fact again, as a new message (the inbox cannot tell): still one notification.
        await bus.publish(confirmed)
        assert await runtime.settle()

        ada = await bus.ask(ListNotifications(), principal=ADA)
        bob = await bus.ask(ListNotifications(), principal=BOB)

    assert subjects(ada) == [
        "Welcome to the shop",
        "Your order is confirmed",
        "Your order was cancelled",
    ]
    assert {item.recipient_id for item in ada} == {ADA.subject}
    assert [item.created_at for item in ada] == sorted(
        (item.created_at for item in ada), reverse=True
    )
    confirmation = next(item for item in ada if item.order_id == "o-1")
    assert "12.34 EUR" in confirmation.body
    assert [(item.order_id, item.subject) for item in bob] == [
        ("o-3", "Your order could not be accepted")
    ]
    assert bob[0].body == "Order o-3 could not be accepted: not enough stock. Nothing was charged."


def test_a_notification_tells_why_in_plain_words_only() -> None:
    # Issue 11, item 14: a notification read "the provider did not answer within 2.0s (3
    # attempts)"; the provider's words stay in the logs and the admins' views.
    told = {
        "payment_failed: payment capture: the provider did not answer within 2.0s (3 attempts)": (
            "the payment could not be processed"
        ),
        "payment_failed": "the payment could not be processed",
        "payment_declined: do not honour": "the payment was declined",
        "timeout": "it could not be completed in time",
        "insufficient_stock: TEA": "not enough stock (TEA)",
        "unknown_sku: TEA": "a product is no longer sold (TEA)",
        "ConnectError at http://10.0.0.7:8080/v1/charges": "it could not be completed",
        "": "it could not be completed",
    }
    for reason, plain in told.items():
        assert domain.plain_reason(reason) == plain
        cancelled = domain.order_cancelled("o-1", reason).body
        assert cancelled == (
            f"Order o-1 was cancelled: {plain}. Nothing was charged and nothing will ship."
        )
        assert f"could not be accepted: {plain}." in domain.order_rejected("o-1", reason).body


@pytest.mark.anyio
async def test_notifications_need_a_principal_and_honour_the_limit(
    sqlite_url: str, transport: str
) -> None:
    async with running_shop(sqlite_url, transport=transport, hosted=HOSTED) as runtime:
        bus = runtime.bus
        for number in range(3):
            await bus.publish(
                OrderCancelled(order_id=f"o-{number}", customer_id=ADA.subject, reason="timeout")
            )
        assert await runtime.settle()
        with pytest.raises(Unauthenticated):
            await bus.ask(ListNotifications())
        assert len(await bus.ask(ListNotifications(limit=2), principal=ADA)) == 2
        assert await bus.ask(ListNotifications(), principal=BOB) == []


@pytest.mark.anyio
async def test_a_fact_told_again_is_not_stored_again(database_url: str) -> None:
    """The duplicate check and the write are one statement: the second telling stores
    nothing and raises nothing (no conflict to run again), on every database."""
    async with running_shop(database_url, hosted=HOSTED) as runtime:
        assert runtime.receiver is not None
        storage = runtime.receiver.dispatcher.handler_of(ListNotifications).storage
        notifications = Notifications(Transaction())
        stored = []
        for number in range(2):
            unit = storage.unit_of_work(new_envelope(message_name(OrderCancelled), 1))
            token = unit.enter()
            try:
                stored.append(
                    await notifications.add_once(
                        domain.Notification(
                            id=f"n-{number}",
                            recipient_id=ADA.subject,
                            kind=domain.Kind.ORDER_CANCELLED,
                            about="o-9",
                            order_id="o-9",
                            subject="Your order was cancelled",
                            body=f"telling {number}",
                            created_at=float(number),
                        )
                    )
                )
                await unit.commit()
            finally:
                unit.leave(token)
                await unit.rollback()
        told = await runtime.bus.ask(ListNotifications(), principal=ADA)
    assert stored == [True, False]
    assert [(item.id, item.body) for item in told] == [("n-0", "telling 0")]

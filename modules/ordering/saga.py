"""The order saga at work: loads a saga, runs one transition, stores it, carries out what it
asks for. The rules themselves are in ``domain.Saga``; this is their I/O.

Every action becomes a message recorded in the same unit of work as the transition (``defer``
for commands to inventory and payments, ``publish`` for ordering's own events), so a
transition and its consequences commit together or not at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from kernel import Bus, Clock
from modules.inventory.contracts import ReleaseStock, ReserveStock, SellStock, StockLine
from modules.ordering.contracts import OrderCancelled, OrderConfirmed, OrderRejected
from modules.ordering.domain import Action, Order, OrderStatus, Saga
from modules.ordering.prices import PriceBook
from modules.ordering.repository import Orders, Sagas
from modules.ordering.settings import OrderingSettings
from modules.ordering.waiters import OrderWaiters
from modules.payments.contracts import CapturePayment, VoidPayment

log = logging.getLogger("cleave.ordering")

#: One transition of a saga, as a function of it.
Transition = Callable[[Saga], list[Action]]

_SETTLED = {
    Action.CONFIRM_ORDER: OrderStatus.CONFIRMED,
    Action.REJECT_ORDER: OrderStatus.REJECTED,
    Action.CANCEL_ORDER: OrderStatus.CANCELLED,
}


class SagaRunner:
    """Runs transitions of order sagas inside the current unit of work."""

    def __init__(
        self,
        orders: Orders,
        sagas: Sagas,
        bus: Bus,
        clock: Clock,
        settings: OrderingSettings,
        waiters: OrderWaiters,
        prices: PriceBook,
    ) -> None:
        self._prices = prices
        self._orders = orders
        self._sagas = sagas
        self._bus = bus
        self._clock = clock
        self._settings = settings
        self._waiters = waiters

    async def start(self, order: Order, payment_token: str) -> None:
        """Store a new order and start its saga (which first reserves the stock)."""
        saga, actions = Saga.start(
            order_id=order.id,
            amount_cents=order.total_cents,
            currency=order.currency,
            payment_token=payment_token,
            deadline=self._clock.now() + self._settings.order_timeout_seconds,
            placed_at=order.created_at,
            priced={line.sku: line.catalog_version for line in order.lines},
        )
        await self._orders.add(order)
        await self._sagas.add(saga)
        await self._carry_out(saga, actions, order)

    async def advance(self, order_id: str, transition: Transition) -> None:
        """Run ``transition`` on the saga of ``order_id`` (an answer from another module)."""
        saga = await self._sagas.get(order_id)
        if saga is None:
            # Not one of ours (or its PlaceOrder rolled back): nothing to settle.
            log.warning("no saga for order %s; the answer is ignored", order_id)
            return
        before = dataclasses.replace(saga)
        actions = transition(saga)
        if Action.CAPTURE_PAYMENT in actions:
            actions = self._unless_price_changed(saga, actions)
        if saga != before:
            await self._sagas.save(saga)
        await self._carry_out(saga, actions)

    def _unless_price_changed(self, saga: Saga, actions: list[Action]) -> list[Action]:
        # The last moment before money moves: an order priced at a version the catalog had
        # already replaced when it was placed is not charged at that price (ADR 0018).
        sku = self._prices.changed_before(saga.priced, saga.placed_at)
        if sku is None:
            return actions
        log.info("order %s was priced at an old price of %s; cancelling", saga.order_id, sku)
        return saga.price_changed(sku)

    async def expire_overdue(self) -> int:
        """Act on at most ``expire_batch`` unsettled sagas past their deadline, longest overdue
        first; how many it acted on (the timer runs it again for the rest).

        A saga waiting for stock or payment is compensated; one selling or compensating
        asks again for what it still waits for (its command may have been dead-lettered).
        """
        now = self._clock.now()
        overdue = await self._sagas.expired(now, self._settings.expire_batch)
        for saga in overdue:
            step = saga.step
            actions = saga.expire(now, now + self._settings.order_timeout_seconds)
            await self._sagas.save(saga)
            await self._carry_out(saga, actions)
            if step is saga.step:
                log.warning(
                    "order %s is still %s past its deadline; asking again: %s",
                    saga.order_id,
                    step.value,
                    ", ".join(action.value for action in actions),
                )
            else:
                log.info("order %s timed out while %s; compensating", saga.order_id, step.value)
        return len(overdue)

    async def _carry_out(
        self, saga: Saga, actions: list[Action], order: Order | None = None
    ) -> None:
        bus = self._bus
        for action in actions:
            if action is Action.RESERVE_STOCK:
                assert order is not None, "the saga reserves stock only when it starts"
                await bus.defer(
                    ReserveStock(
                        order_id=saga.order_id,
                        lines=[
                            StockLine(sku=line.sku, quantity=line.quantity) for line in order.lines
                        ],
                    )
                )
            elif action is Action.CAPTURE_PAYMENT:
                assert saga.payment_token is not None, "a saga that captures keeps its token"
                await bus.defer(
                    CapturePayment(
                        order_id=saga.order_id,
                        amount_cents=saga.amount_cents,
                        currency=saga.currency,
                        payment_token=saga.payment_token,
                    )
                )
            elif action is Action.SELL_STOCK:
                await bus.defer(SellStock(order_id=saga.order_id))
            elif action is Action.RELEASE_STOCK:
                await bus.defer(ReleaseStock(order_id=saga.order_id))
            elif action is Action.VOID_PAYMENT:
                await bus.defer(VoidPayment(order_id=saga.order_id))
            else:
                await self._settle(saga, _SETTLED[action])

    async def _settle(self, saga: Saga, status: OrderStatus) -> None:
        order = await self._orders.get(saga.order_id)
        if order is None:  # the order and its saga are written together: a bug if missing
            raise LookupError(f"saga {saga.order_id} has no order")
        order.settle(status, saga.reason)
        await self._orders.save(order)
        if status is OrderStatus.CONFIRMED:
            event: OrderConfirmed | OrderRejected | OrderCancelled = OrderConfirmed(
                order_id=order.id,
                customer_id=order.customer_id,
                total_cents=order.total_cents,
                currency=order.currency,
            )
        elif status is OrderStatus.REJECTED:
            event = OrderRejected(
                order_id=order.id, customer_id=order.customer_id, reason=order.reason or ""
            )
        else:
            event = OrderCancelled(
                order_id=order.id, customer_id=order.customer_id, reason=order.reason or ""
            )
        await self._bus.publish(event)
        self._waiters.wake_after_commit(order)
        log.info("order %s is %s (%s)", order.id, status.value, order.reason or "paid")

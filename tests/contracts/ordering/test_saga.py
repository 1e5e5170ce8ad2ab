"""The order saga's rules, as plain Python: every transition, and a model of the world
around it (inventory, the payment provider, an unreliable delivery order) that hypothesis
drives through any interleaving of answers, repeats and timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.ordering.domain import (
    MIXED_CURRENCIES,
    TOO_LARGE,
    UNKNOWN_SKU,
    Action,
    Line,
    Order,
    OrderStatus,
    PricingError,
    Saga,
    Step,
    price_lines,
)

A = Action


def new_saga(deadline: float = 100.0) -> Saga:
    saga, actions = Saga.start("o-1", 1500, "EUR", "tok_ok", deadline)
    assert actions == [A.RESERVE_STOCK]
    return saga


# -- transitions ----------------------------------------------------------------------------


def test_the_happy_path_reserves_captures_sells_and_confirms() -> None:
    saga = new_saga()
    assert saga.stock_reserved() == [A.CAPTURE_PAYMENT]
    assert saga.step is Step.AWAITING_PAYMENT
    assert saga.payment_captured() == [A.SELL_STOCK]
    assert saga.step is Step.CONFIRMING
    assert saga.stock_sold() == [A.CONFIRM_ORDER]
    assert saga.step is Step.CONFIRMED and saga.step.terminal
    assert saga.reason is None


def test_a_failed_reservation_rejects_the_order() -> None:
    saga = new_saga()
    assert saga.stock_reservation_failed("insufficient_stock: TEA") == [A.REJECT_ORDER]
    assert (saga.step, saga.reason) == (Step.REJECTED, "insufficient_stock: TEA")


def test_a_declined_payment_releases_the_stock_then_cancels() -> None:
    saga = new_saga()
    saga.stock_reserved()
    assert saga.payment_declined() == [A.RELEASE_STOCK]
    assert saga.step is Step.RELEASING  # still PENDING to the customer
    assert saga.stock_released() == [A.CANCEL_ORDER]
    assert (saga.step, saga.reason) == (Step.CANCELLED, "payment_declined")


def test_a_failed_payment_also_voids_and_ends_only_when_both_are_settled() -> None:
    saga = new_saga()
    saga.stock_reserved()
    assert saga.payment_failed() == [A.RELEASE_STOCK, A.VOID_PAYMENT]
    assert saga.stock_released() == []
    assert saga.step is Step.RELEASING
    assert saga.payment_voided() == [A.CANCEL_ORDER]
    assert (saga.step, saga.reason) == (Step.CANCELLED, "payment_failed")


def test_the_saga_keeps_the_payment_token_only_while_it_may_capture() -> None:
    # Issue 11, item 8: the token stayed in the saga's row after the order ended.
    saga = new_saga()
    saga.stock_reserved()
    assert saga.payment_token == "tok_ok"  # CapturePayment is on its way with it
    saga.payment_captured()
    assert saga.payment_token is None
    saga.stock_sold()
    assert (saga.step, saga.payment_token) == (Step.CONFIRMED, None)
    rejected = new_saga()
    rejected.stock_reservation_failed("insufficient_stock: TEA")
    assert (rejected.step, rejected.payment_token) == (Step.REJECTED, None)


def test_a_reason_never_holds_what_the_provider_said() -> None:
    # Issue 11, item 14: the provider's words (its URL, an exception) reached customers.
    for answer in (Saga.payment_declined, Saga.payment_failed):
        saga = new_saga()
        saga.stock_reserved()
        answer(saga)
        assert saga.reason in ("payment_declined", "payment_failed")


def test_the_void_may_settle_before_the_release() -> None:
    saga = new_saga()
    saga.stock_reserved()
    saga.payment_failed()
    assert saga.payment_voided() == []
    assert saga.stock_released() == [A.CANCEL_ORDER]
    assert saga.reason == "payment_failed"


def test_expiry_while_awaiting_stock_releases_only() -> None:
    saga = new_saga(deadline=10.0)
    assert saga.expire(9.9, 70.0) == []
    assert saga.expire(10.0, 70.0) == [A.RELEASE_STOCK]
    assert (saga.step, saga.reason, saga.deadline) == (Step.RELEASING, "timeout", 70.0)
    # The reservation, answered late, is refused by inventory's tombstone (or given back).
    assert saga.stock_reservation_failed("released") == []
    assert saga.stock_reserved() == [A.RELEASE_STOCK]
    assert saga.stock_released() == [A.CANCEL_ORDER]
    assert (saga.step, saga.reason) == (Step.CANCELLED, "timeout")


def test_expiry_while_awaiting_payment_releases_and_voids() -> None:
    saga = new_saga(deadline=10.0)
    saga.stock_reserved()
    assert saga.expire(11.0, 71.0) == [A.RELEASE_STOCK, A.VOID_PAYMENT]
    # A capture that was in flight lands: voided again, and the order waits for it.
    assert saga.payment_captured() == [A.VOID_PAYMENT]
    assert saga.stock_released() == []
    assert saga.payment_voided() == [A.CANCEL_ORDER]
    assert saga.step is Step.CANCELLED


@pytest.mark.parametrize("step", [Step.CONFIRMED, Step.REJECTED, Step.CANCELLED])
def test_settled_sagas_never_expire(step: Step) -> None:
    saga = new_saga(deadline=0.0)
    saga.step = step
    assert not saga.expired(1e12)
    assert saga.expire(1e12, 2e12) == []
    assert (saga.step, saga.deadline) == (step, 0.0)


def test_a_saga_still_selling_past_its_deadline_asks_again() -> None:
    saga = new_saga(deadline=10.0)
    saga.stock_reserved()
    saga.payment_captured()
    assert saga.expire(9.0, 70.0) == []
    assert saga.expire(10.0, 70.0) == [A.SELL_STOCK]  # never compensated: the sale completes
    assert (saga.step, saga.deadline) == (Step.CONFIRMING, 70.0)
    assert saga.expire(69.0, 130.0) == []
    assert saga.stock_sold() == [A.CONFIRM_ORDER]


def test_a_saga_still_compensating_past_its_deadline_asks_again_for_what_is_missing() -> None:
    saga = new_saga(deadline=10.0)
    saga.stock_reserved()
    saga.payment_failed()
    assert saga.expire(10.0, 70.0) == [A.RELEASE_STOCK, A.VOID_PAYMENT]
    assert saga.step is Step.RELEASING
    saga.payment_voided()
    assert saga.expire(70.0, 130.0) == [A.RELEASE_STOCK]
    assert saga.stock_released() == [A.CANCEL_ORDER]
    assert saga.expire(1e12, 2e12) == []


def test_late_captures_of_a_cancelled_order_are_voided() -> None:
    saga = new_saga()
    saga.stock_reserved()
    saga.payment_declined()
    saga.stock_released()
    assert saga.payment_captured() == [A.VOID_PAYMENT]
    assert saga.stock_reserved() == [A.RELEASE_STOCK]
    assert saga.step is Step.CANCELLED


def test_repeated_answers_change_nothing() -> None:
    saga = new_saga()
    saga.stock_reserved()
    assert saga.stock_reserved() == []
    saga.payment_captured()
    assert saga.payment_captured() == []
    assert saga.payment_declined() == []
    assert saga.payment_failed() == []
    assert saga.stock_released() == []
    saga.stock_sold()
    before = (saga.step, saga.reason, saga.stock_returned, saga.void_pending)
    for answer in (
        saga.stock_sold,
        saga.stock_reserved,
        saga.payment_captured,
        saga.payment_voided,
    ):
        assert answer() == []
    assert (saga.step, saga.reason, saga.stock_returned, saga.void_pending) == before


def test_an_order_settles_once() -> None:
    order = Order(id="o", customer_id="c", lines=[], total_cents=0, currency="EUR", created_at=0.0)
    order.settle(OrderStatus.CANCELLED, "timeout")
    with pytest.raises(ValueError):
        order.settle(OrderStatus.CONFIRMED)
    assert (order.status, order.reason) == (OrderStatus.CANCELLED, "timeout")


# -- pricing --------------------------------------------------------------------------------

PRICES = {"TEA": (450, "EUR"), "POT": (2000, "EUR"), "MUG": (900, "USD")}


def test_lines_are_priced_and_kept_as_requested() -> None:
    lines, total, currency = price_lines([("TEA", 2), ("POT", 1), ("TEA", 1)], PRICES)
    assert lines == [Line("TEA", 2, 450), Line("POT", 1, 2000), Line("TEA", 1, 450)]
    assert (total, currency) == (3350, "EUR")


@pytest.mark.parametrize(
    ("requested", "code", "index"),
    [
        ([("TEA", 1), ("NOPE", 1)], UNKNOWN_SKU, 1),
        ([("TEA", 1), ("MUG", 1)], MIXED_CURRENCIES, 1),
        ([("POT", 1000)] * 50 + [], None, None),
    ],
)
def test_pricing_refuses(
    requested: list[tuple[str, int]], code: str | None, index: int | None
) -> None:
    prices = dict(PRICES)
    if code is None:  # a total above what one charge may be
        prices["POT"] = (100_000_000, "EUR")
        code = TOO_LARGE
    with pytest.raises(PricingError) as refused:
        price_lines(requested, prices)
    assert (refused.value.code, refused.value.index) == (code, index)


# -- the saga in a model of its world -------------------------------------------------------


@dataclass
class World:
    """Inventory, payments and the provider as the saga's contracts describe them, and
    the messages in flight between them and the saga, delivered in any order."""

    enough_stock: bool
    token: str  # ok, declined, error, slow
    saga: Saga = field(default_factory=new_saga)
    reservation: str | None = None  # RESERVED, FAILED, RELEASED, SOLD
    charge: str | None = None  # captured, declined, voided (the provider's record)
    voided_key: bool = False  # the provider blocks later captures of the key
    in_flight: list[str] = field(default_factory=list)
    sells_refused: int = 0
    settled: list[Action] = field(default_factory=list)

    def act(self, actions: list[Action]) -> None:
        for action in actions:
            if action in (A.CONFIRM_ORDER, A.REJECT_ORDER, A.CANCEL_ORDER):
                self.settled.append(action)  # in the transition's own unit of work
            else:
                self.in_flight.append(action.value)

    def deliver(self, message: str) -> None:
        saga = self.saga
        if message == A.RESERVE_STOCK:
            if self.reservation is None:
                self.reservation = "RESERVED" if self.enough_stock else "FAILED"
            if self.reservation in ("RESERVED", "SOLD"):
                self.in_flight.append("StockReserved")
            else:
                self.in_flight.append("StockReservationFailed")
        elif message == A.RELEASE_STOCK:
            if self.reservation in (None, "RESERVED"):
                self.reservation = "RELEASED"
            self.in_flight.append("StockReleased")
        elif message == A.SELL_STOCK:
            if self.reservation in ("RESERVED", "SOLD"):
                self.reservation = "SOLD"
                self.in_flight.append("StockSold")
            else:
                self.sells_refused += 1  # NotFound: a dead letter
        elif message == A.CAPTURE_PAYMENT:
            if self.charge is not None:
                pass  # idempotent: the first answer stands
            elif self.voided_key:
                self.charge = "voided"
            elif self.token == "ok":
                self.charge = "captured"
            elif self.token == "declined":
                self.charge = "declined"
            elif self.token == "slow":
                self.charge = "captured"  # the provider completes what timed out here
            answer = {
                "captured": "PaymentCaptured",
                "declined": "PaymentDeclined",
            }.get(self.charge or "", "PaymentFailed")
            if self.token == "slow":
                answer = "PaymentFailed"
            self.in_flight.append(answer)
        elif message == A.VOID_PAYMENT:
            self.voided_key = True
            if self.charge == "captured":
                self.charge = "voided"
            self.in_flight.append("PaymentVoided")
        else:
            transition = {
                "StockReserved": saga.stock_reserved,
                "StockReservationFailed": lambda: saga.stock_reservation_failed("insufficient"),
                "StockReleased": saga.stock_released,
                "StockSold": saga.stock_sold,
                "PaymentCaptured": saga.payment_captured,
                "PaymentDeclined": saga.payment_declined,
                "PaymentFailed": saga.payment_failed,
                "PaymentVoided": saga.payment_voided,
            }[message]
            self.act(transition())


@settings(max_examples=200, deadline=None)
@given(
    enough_stock=st.booleans(),
    token=st.sampled_from(["ok", "declined", "error", "slow"]),
    data=st.data(),
)
def test_every_interleaving_settles_consistently(
    enough_stock: bool, token: str, data: st.DataObject
) -> None:
    world = World(enough_stock=enough_stock, token=token)
    world.act([A.RESERVE_STOCK])
    steps = 0
    while world.in_flight:
        steps += 1
        assert steps < 200, "the saga does not settle"
        choice = data.draw(st.integers(0, len(world.in_flight) - 1), label="deliver")
        message = world.in_flight.pop(choice)
        world.deliver(message)
        if data.draw(st.integers(0, 9), label="repeat") == 0:
            world.deliver(message)  # delivered twice (the saga, not the inbox, copes)
        if data.draw(st.integers(0, 9), label="timer") == 0:
            deadline = world.saga.deadline
            world.act(world.saga.expire(deadline, deadline + 1))

    saga = world.saga
    assert saga.step.terminal, saga
    # A settled order keeps no card token (issue 11, item 8).
    assert saga.payment_token is None, saga
    assert world.sells_refused == 0
    assert len(world.settled) == 1, world.settled
    if saga.step is Step.CONFIRMED:
        assert world.reservation == "SOLD"
        assert world.charge == "captured"
    else:
        assert world.reservation != "RESERVED" and world.reservation != "SOLD"
        assert world.charge != "captured"
    if saga.step is Step.REJECTED:
        assert not enough_stock
    if token != "ok":
        assert saga.step is not Step.CONFIRMED

"""Ordering's rules, in plain Python: the order a customer sees and the saga that settles it.

The order is what the customer placed, at the prices of the moment, and its public status.
The saga (a process manager) is how the order gets settled: it reacts to what inventory and
payments answer and says, through ``Step`` values, what to ask of them next. Every
transition first looks at the current step, so late and repeated answers are harmless.

The order stays PENDING to the customer until the saga is done, so that a terminal status
means every effect has settled: the stock is sold (CONFIRMED) or not held any more
(REJECTED, CANCELLED), and no capture is left standing for an order that was not confirmed.

The reason an order ends is a plain code the customer may read; what the payment provider
said in detail is for the logs and the admins' views of payments. The payment token is kept
only while the saga may still ask for a capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

#: The most a single charge may be (the payments contract's bound on ``amount_cents``).
MAX_TOTAL_CENTS = 10_000_000_000

#: Reasons an order ends other than CONFIRMED (besides inventory's, such as
#: "insufficient_stock: TEA").
TIMEOUT = "timeout"
PAYMENT_DECLINED = "payment_declined"
PAYMENT_FAILED = "payment_failed"
#: The catalog had changed the price of a line before the order was placed (ADR 0018).
PRICE_CHANGED = "price_changed"


class OrderStatus(StrEnum):
    """What the customer sees."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class Step(StrEnum):
    """Where the saga of an order is."""

    #: ReserveStock is on its way to inventory.
    AWAITING_STOCK = "AWAITING_STOCK"
    #: Stock is reserved; CapturePayment is on its way to payments.
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    #: Paid; SellStock is on its way. Never compensated: the sale completes.
    CONFIRMING = "CONFIRMING"
    #: Compensating: ReleaseStock (and perhaps VoidPayment) are on their way.
    RELEASING = "RELEASING"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {Step.CONFIRMED, Step.REJECTED, Step.CANCELLED}
#: The steps in which a saga past its deadline gives up: it waits for an answer it may never
#: get. (Past the deadline, a saga selling or compensating asks again instead.)
EXPIRABLE = (Step.AWAITING_STOCK, Step.AWAITING_PAYMENT)
#: The steps of a saga that is not done.
UNSETTLED = (Step.AWAITING_STOCK, Step.AWAITING_PAYMENT, Step.CONFIRMING, Step.RELEASING)
#: The steps in which the saga may still ask for a capture, and so needs the payment token.
PAYING = (Step.AWAITING_STOCK, Step.AWAITING_PAYMENT)


class Action(StrEnum):
    """What the saga asks for after a transition; the handler turns each into a message."""

    RESERVE_STOCK = "RESERVE_STOCK"
    CAPTURE_PAYMENT = "CAPTURE_PAYMENT"
    SELL_STOCK = "SELL_STOCK"
    RELEASE_STOCK = "RELEASE_STOCK"
    VOID_PAYMENT = "VOID_PAYMENT"
    CONFIRM_ORDER = "CONFIRM_ORDER"
    REJECT_ORDER = "REJECT_ORDER"
    CANCEL_ORDER = "CANCEL_ORDER"


@dataclass(frozen=True)
class Line:
    """One line of an order, priced when it was placed."""

    sku: str
    quantity: int
    unit_price_cents: int
    #: The catalog's version of the product whose price this is (ADR 0018).
    catalog_version: int = 0

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


class PricingError(Exception):
    """The requested lines cannot be priced; ``code`` says why, ``index`` names the line."""

    def __init__(self, code: str, detail: str, index: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.index = index


#: Why pricing failed.
UNKNOWN_SKU = "unknown_sku"
MIXED_CURRENCIES = "mixed_currencies"
TOO_LARGE = "too_large"


def price_lines(
    requested: list[tuple[str, int]],
    prices: dict[str, tuple[int, str]],
    versions: dict[str, int] | None = None,
) -> tuple[list[Line], int, str]:
    """Price each requested ``(sku, quantity)`` from ``prices`` (sku -> (cents, currency));
    each line records the catalog's version of its product from ``versions``.

    Lines are kept as requested (a repeated SKU stays two lines; inventory adds them up).
    Returns the lines, the total and the currency, or raises ``PricingError``.
    """
    lines: list[Line] = []
    currency: str | None = None
    for index, (sku, quantity) in enumerate(requested):
        price = prices.get(sku)
        if price is None:
            raise PricingError(UNKNOWN_SKU, f"no product {sku}", index)
        cents, line_currency = price
        if currency is None:
            currency = line_currency
        elif line_currency != currency:
            raise PricingError(
                MIXED_CURRENCIES,
                f"{sku} is priced in {line_currency}, the order in {currency}: "
                "place one order per currency",
                index,
            )
        version = 0 if versions is None else versions.get(sku, 0)
        lines.append(
            Line(sku=sku, quantity=quantity, unit_price_cents=cents, catalog_version=version)
        )
    if currency is None:
        raise PricingError(UNKNOWN_SKU, "an order needs at least one line")
    total = sum(line.total_cents for line in lines)
    if total > MAX_TOTAL_CENTS:
        raise PricingError(TOO_LARGE, f"the total {total} exceeds {MAX_TOTAL_CENTS} cents")
    return lines, total, currency


@dataclass
class Order:
    """An order as placed, and its public status."""

    id: str
    customer_id: str
    lines: list[Line]
    total_cents: int
    currency: str
    created_at: float
    status: OrderStatus = OrderStatus.PENDING
    reason: str | None = None
    version: int = 0

    def settle(self, status: OrderStatus, reason: str | None = None) -> None:
        """End the order; only a PENDING order ends, and only once."""
        if self.status is not OrderStatus.PENDING:
            raise ValueError(f"order {self.id} is {self.status.value} already")
        if status is OrderStatus.PENDING:
            raise ValueError("settling needs a terminal status")
        self.status = status
        self.reason = reason

    def visible_to(self, subject: str, admin: bool) -> bool:
        return admin or self.customer_id == subject


@dataclass
class Saga:
    """The process that settles one order. Each method is one transition and returns the
    actions it calls for; an answer that does not fit the current step changes nothing, or
    repeats a compensation that cannot hurt."""

    order_id: str
    amount_cents: int
    currency: str
    #: None once the saga is past the steps that may capture (``PAYING``): a card token is
    #: not kept longer than it may be used.
    payment_token: str | None
    deadline: float
    step: Step = Step.AWAITING_STOCK
    reason: str | None = None
    #: While RELEASING: whether the stock is given back yet.
    stock_returned: bool = False
    #: While RELEASING: whether a VoidPayment is awaited before the order may end.
    void_pending: bool = False
    version: int = 0
    #: When the order was placed, and the catalog's version of each product it was priced
    #: at: checked before the payment is asked for (ADR 0018). Empty: nothing to check.
    placed_at: float = 0.0
    priced: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        order_id: str,
        amount_cents: int,
        currency: str,
        payment_token: str,
        deadline: float,
        *,
        placed_at: float = 0.0,
        priced: dict[str, int] | None = None,
    ) -> tuple[Saga, list[Action]]:
        """A new saga; its first action reserves the stock."""
        saga = cls(
            order_id=order_id,
            amount_cents=amount_cents,
            currency=currency,
            payment_token=payment_token,
            deadline=deadline,
            placed_at=placed_at,
            priced=dict(priced or {}),
        )
        return saga, [Action.RESERVE_STOCK]

    # -- inventory's answers ----------------------------------------------------------------

    def stock_reserved(self) -> list[Action]:
        if self.step is Step.AWAITING_STOCK:
            self._move(Step.AWAITING_PAYMENT)
            return [Action.CAPTURE_PAYMENT]
        if self.step in (Step.RELEASING, Step.CANCELLED):
            # Reserved after (or while) the saga gave up: give it back again, to be sure.
            return [Action.RELEASE_STOCK]
        return []

    def stock_reservation_failed(self, reason: str) -> list[Action]:
        if self.step is Step.AWAITING_STOCK:
            self._move(Step.REJECTED)
            self.reason = reason
            return [Action.REJECT_ORDER]
        # While RELEASING nothing is held either; the StockReleased on its way ends it.
        return []

    def stock_sold(self) -> list[Action]:
        if self.step is Step.CONFIRMING:
            self._move(Step.CONFIRMED)
            return [Action.CONFIRM_ORDER]
        return []

    def stock_released(self) -> list[Action]:
        if self.step is Step.RELEASING:
            self.stock_returned = True
            return self._cancel_when_settled()
        return []

    def price_changed(self, sku: str) -> list[Action]:
        """Instead of asking for the payment: the order was priced at a version of ``sku``
        the catalog had replaced when it was placed. It is not charged at that price: the
        stock goes back and the order ends CANCELLED (ADR 0018)."""
        if self.step is Step.AWAITING_PAYMENT:
            return self._compensate(f"{PRICE_CHANGED}: {sku}", void=False)
        return []

    # -- payments' answers ------------------------------------------------------------------

    def payment_captured(self) -> list[Action]:
        if self.step is Step.AWAITING_PAYMENT:
            self._move(Step.CONFIRMING)
            return [Action.SELL_STOCK]
        if self.step is Step.RELEASING:
            # A capture that landed after the saga gave up: it must not stand.
            self.void_pending = True
            return [Action.VOID_PAYMENT]
        if self.step is Step.CANCELLED:
            return [Action.VOID_PAYMENT]
        return []

    def payment_declined(self) -> list[Action]:
        if self.step is Step.AWAITING_PAYMENT:
            return self._compensate(PAYMENT_DECLINED, void=False)
        return []

    def payment_failed(self) -> list[Action]:
        if self.step is Step.AWAITING_PAYMENT:
            # The provider did not answer in time: a capture may still be in flight there.
            return self._compensate(PAYMENT_FAILED, void=True)
        return []

    def payment_voided(self) -> list[Action]:
        if self.step is Step.RELEASING and self.void_pending:
            self.void_pending = False
            return self._cancel_when_settled()
        return []

    # -- the clock --------------------------------------------------------------------------

    def expired(self, now: float) -> bool:
        return not self.step.terminal and now >= self.deadline

    def expire(self, now: float, next_deadline: float) -> list[Action]:
        """At the deadline: give up on a saga still waiting for stock or payment; or, for a
        saga still settling (selling or compensating), ask again for what it waits for, in
        case the answer was lost (each of those commands may be repeated). The saga looks
        again at ``next_deadline``."""
        if not self.expired(now):
            return []
        self.deadline = next_deadline
        if self.step in EXPIRABLE:
            # Awaiting payment, a capture may be in flight: void it too.
            return self._compensate(TIMEOUT, void=self.step is Step.AWAITING_PAYMENT)
        if self.step is Step.CONFIRMING:
            return [Action.SELL_STOCK]
        actions = [] if self.stock_returned else [Action.RELEASE_STOCK]
        return [*actions, Action.VOID_PAYMENT] if self.void_pending else actions

    # -- helpers ----------------------------------------------------------------------------

    def _move(self, step: Step) -> None:
        self.step = step
        if step not in PAYING:
            self.payment_token = None

    def _compensate(self, reason: str, *, void: bool) -> list[Action]:
        self._move(Step.RELEASING)
        self.reason = reason
        self.void_pending = void
        return [Action.RELEASE_STOCK, Action.VOID_PAYMENT] if void else [Action.RELEASE_STOCK]

    def _cancel_when_settled(self) -> list[Action]:
        if self.stock_returned and not self.void_pending:
            self._move(Step.CANCELLED)
            return [Action.CANCEL_ORDER]
        return []

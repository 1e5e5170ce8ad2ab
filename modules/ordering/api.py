"""Ordering's public REST routes. They talk to the bus only."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from kernel import Bus, Conflict, Principal
from modules.catalog.contracts import Sku
from modules.ordering.contracts import (
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_REUSED,
    MAX_WAIT_SECONDS,
    TOO_MANY_OPEN_ORDERS,
    TOO_MANY_ORDERS,
    GetOrder,
    ListOrders,
    OrderId,
    OrderLineRequest,
    OrderView,
    PlaceOrder,
    Quantity,
)
from modules.payments.contracts import PaymentToken

#: The header a client retries an order under (the ``idempotency_key`` of ``PlaceOrder``).
IDEMPOTENCY_KEY = "Idempotency-Key"

_ORDER_ID: msgspec.Meta = OrderId.__metadata__[0]
#: The refusals of ``PlaceOrder`` that are not plain conflicts, by error code.
_STATUS = {IDEMPOTENCY_KEY_REUSED: 422, TOO_MANY_ORDERS: 429}
_TITLES = {409: "Conflict", 422: "Unprocessable Content", 429: "Too Many Requests"}
#: Orders placed more than a minute ago no longer count against the pace.
_RETRY_AFTER_SECONDS = "60"
#: A waiting GetOrder's deadline is this much past the wait: ordering stops waiting a second
#: before it, and the answer has the rest to travel back.
_ANSWER_SECONDS = 5.0


class NewOrderLine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity


class NewOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An order as a customer sends it (the bounds of ``PlaceOrder``)."""

    lines: Annotated[list[NewOrderLine], msgspec.Meta(min_length=1, max_length=50)]
    payment_token: PaymentToken


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem, as every error of the API is answered."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str | None = None
    field: str | None = None


def refused(request: Request[Any, Any, Any], error: Conflict) -> Response[Problem]:
    """A conflict under ordering's routes, with the status its code calls for: an order sent
    again under a used key is unprocessable (422), a customer ordering too fast is 429."""
    status = _STATUS.get(error.code or "", 409)
    headers = {"Retry-After": _RETRY_AFTER_SECONDS} if status == 429 else None
    body = Problem(
        title=_TITLES[status],
        status=status,
        detail=error.detail,
        code=error.code,
        field=error.field,
    )
    return Response(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type="application/problem+json",
        generate_examples=False,
    )


class OrdersController(Controller):
    path = "/api/v1/orders"
    tags = ["ordering"]
    exception_handlers = {Conflict: refused}

    @post(
        "",
        opt={"roles": ["customer", "admin"]},
        status_code=202,
        summary="Place an order; GET it with `?wait=` until CONFIRMED, REJECTED or CANCELLED",
        description=(
            "Send an `Idempotency-Key` header to make the request safe to retry: the same "
            "order sent again under the same key (for at least 24 hours) answers the order "
            "placed the first time, as it is now, and charges nothing more; another order "
            "under a key already used is refused with 422. Each customer has at most "
            "`CLEAVE_MAX_OPEN_ORDERS` pending orders (409 past it) and places at most "
            "`CLEAVE_ORDERS_PER_MINUTE` orders a minute (429 past it). 400 naming the line "
            "for a SKU the catalog does not know, for products priced in different "
            "currencies, or for a total past what one order may cost."
        ),
        responses={
            409: _problem(f"Too many pending orders (code `{TOO_MANY_OPEN_ORDERS}`)"),
            422: _problem(
                f"The Idempotency-Key was used for another order (code `{IDEMPOTENCY_KEY_REUSED}`)"
            ),
            429: _problem(f"Too many orders in the last minute (code `{TOO_MANY_ORDERS}`)"),
        },
    )
    async def place_order(
        self,
        data: JSONBody[NewOrder],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name=IDEMPOTENCY_KEY,
                required=False,
                min_length=1,
                max_length=255,
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="A key of the client's choosing, unique per order it means to "
                "place (1 to 255 printable ASCII characters): a retry under the same key "
                "never places or charges the order twice.",
            ),
        ] = None,
    ) -> OrderView:
        command = PlaceOrder(
            lines=[OrderLineRequest(sku=line.sku, quantity=line.quantity) for line in data.lines],
            payment_token=data.payment_token,
            idempotency_key=idempotency_key,
        )
        return await bus.send(command, principal=principal)

    @get("", summary="The caller's orders, newest first")
    async def list_orders(
        self,
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[OrderView]:
        return await bus.ask(ListOrders(limit=limit), principal=principal)

    @get(
        "/{order_id:str}",
        summary="One order: the caller's own, or any for an admin",
        description=(
            "With `wait=SECONDS` (at most "
            f"{MAX_WAIT_SECONDS}), a PENDING order is answered as soon as it is CONFIRMED, "
            "REJECTED or CANCELLED, or as it is when the wait ends: wait instead of polling."
        ),
        responses={404: _problem("No such order, or another customer's")},
    )
    async def get_order(
        self,
        order_id: Annotated[
            str,
            PathParameter(min_length=_ORDER_ID.min_length, max_length=_ORDER_ID.max_length),
        ],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        wait: Annotated[
            int,
            QueryParameter(
                ge=0,
                le=MAX_WAIT_SECONDS,
                description="Seconds to wait for a PENDING order to settle before answering "
                "(0, the default, answers at once).",
            ),
        ] = 0,
    ) -> OrderView:
        query = msgspec.convert({"order_id": order_id, "wait_seconds": wait}, GetOrder)
        # The call outlives the wait by the time the answer needs to come back over any
        # transport (a remote call's own default deadline is shorter than a long wait).
        deadline = time.time() + wait + _ANSWER_SECONDS if wait else None
        return await bus.ask(query, principal=principal, deadline=deadline)


#: The public routes of ordering, served by whichever process hosts the public API.
routes = [OrdersController]

"""Ordering's later revisions on a database with orders in it: settled sagas forget their
card token, reasons drop what the provider said, and retries find the new key table
(issue 11, items 4, 8 and 14)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.migrations import differences, upgrade
from entrypoints.bootstrap import bootstrap, create_tables, schema_histories, shop_modules
from kernel import Bus, Principal
from modules.ordering.contracts import GetOrder, OrderLineRequest, PlaceOrder
from tests.contracts.shop.sandbox import sandbox_payments
from tests.support.harness import TEST_SETTINGS, drop_database, open_database

pytestmark = pytest.mark.anyio

ADA = Principal(subject="u-ada", roles=("customer",))
HISTORIES = [history for module in shop_modules() for history in schema_histories(module)]
PROVIDER_WORDS = "payment_failed: payment capture: the provider did not answer within 2.0s"

#: (order id, order status, saga step, token, reason) as the first revision's code stored them.
ROWS = [
    ("o-paid", "CONFIRMED", "CONFIRMED", "tok_card_1", None),
    ("o-failed", "CANCELLED", "CANCELLED", "tok_card_2", PROVIDER_WORDS),
    ("o-declined", "CANCELLED", "CANCELLED", "tok_card_3", "payment_declined: do not honour"),
    ("o-short", "REJECTED", "REJECTED", "tok_card_4", "insufficient_stock: TEA"),
    ("o-selling", "PENDING", "CONFIRMING", "tok_card_5", None),
    ("o-paying", "PENDING", "AWAITING_PAYMENT", "tok_card_6", None),
]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = await open_database(database_url)
    try:
        yield database
    finally:
        await drop_database(database)


async def test_settled_sagas_forget_tokens_and_reasons_drop_the_providers_words(
    database: Database,
) -> None:
    firsts = {history.name: str(history.base()) for history in HISTORIES}
    await upgrade(database, HISTORIES, revisions=firsts, from_empty="migrate")
    async with database.engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO catalog_products VALUES ('TEA', 'Tea', '', 450, 'EUR', 1)")
        )
        for order_id, status, step, token, reason in ROWS:
            values = {"id": order_id, "status": status, "step": step, "token": token}
            await connection.execute(
                text(
                    "INSERT INTO ordering_orders VALUES "
                    "(:id, 'u-ada', :status, :reason, 450, 'EUR', 1.0, 1)"
                ),
                {**values, "reason": reason},
            )
            await connection.execute(
                text(
                    "INSERT INTO ordering_sagas VALUES "
                    "(:id, :step, :reason, 450, 'EUR', :token, 99.0, false, false, 1)"
                ),
                {**values, "reason": reason},
            )

    await create_tables(database)

    assert await differences(database, HISTORIES) == []
    async with database.engine.connect() as connection:
        rows = await connection.execute(text("SELECT order_id, payment_token FROM ordering_sagas"))
        sagas = {order_id: token for order_id, token in rows}
    # Only a saga that may still capture keeps its token.
    assert sagas == {
        "o-paid": "",
        "o-failed": "",
        "o-declined": "",
        "o-short": "",
        "o-selling": "",
        "o-paying": "tok_card_6",
    }
    with sandbox_payments(TEST_SETTINGS) as payments:
        bus = bootstrap(
            database=database, settings=TEST_SETTINGS, payment_provider=payments.provider
        ).bus
        await read_back(bus)
        await payments.provider.close()


async def read_back(bus: Bus) -> None:
    reasons = {
        order_id: (await bus.ask(GetOrder(order_id=order_id), principal=ADA)).reason
        for order_id, *_ in ROWS
    }
    assert reasons == {
        "o-paid": None,
        "o-failed": "payment_failed",
        "o-declined": "payment_declined",
        "o-short": "insufficient_stock: TEA",
        "o-selling": None,
        "o-paying": None,
    }
    # The key table is there: a keyed order is placed, and found again under its key.
    keyed = PlaceOrder(
        lines=[OrderLineRequest(sku="TEA", quantity=1)], payment_token="tok_ok", idempotency_key="k"
    )
    first = await bus.send(keyed, principal=ADA)
    assert (await bus.send(keyed, principal=ADA)).id == first.id

"""The SQL of the order flow, counted with the listener the bench reads
(``CLEAVE_BENCH_COUNT_SQL``): what each look at an order costs (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from adapters.sqlalchemy import pg_connection
from adapters.sqlalchemy.statement_counts import COUNTS, classify
from kernel import SYSTEM, Principal
from kernel.runtime import Runtime
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import GetOrder, ListOrders, OrderLineRequest, PlaceOrder
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.services import require_postgres

pytestmark = pytest.mark.anyio

_CUSTOMER = Principal(subject="c", roles=("customer",))


@pytest.fixture
async def provider() -> AsyncIterator[HttpPaymentProvider]:
    with SandboxPaymentProvider() as sandbox:
        client = HttpPaymentProvider.from_settings(sandbox.url, TEST_SETTINGS)
        yield client
        await client.close()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEAVE_BENCH_COUNT_SQL", "1")


async def test_a_look_at_an_order_with_its_lines_is_one_statement(
    tmp_path: Path, counting: None, provider: HttpPaymentProvider
) -> None:
    customer = Principal(subject="c", roles=("customer",))
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    async with running_shop(url, payment_provider=provider) as runtime:
        bus = runtime.bus
        for sku in ("TEA", "JAM"):
            await bus.send(AddProduct(sku=sku, name=sku, price_cents=100), principal=SYSTEM)
            await bus.send(Restock(sku=sku, quantity=10), principal=SYSTEM)
        lines = [OrderLineRequest(sku="TEA", quantity=2), OrderLineRequest(sku="JAM", quantity=1)]
        placed = await bus.send(PlaceOrder(lines=lines, payment_token="tok_ok"), principal=customer)
        assert await runtime.settle()
        COUNTS.clear()
        order = await bus.ask(GetOrder(order_id=placed.id), principal=customer)
        ordering_statements = {
            key: count for key, count in COUNTS.statements.items() if key[0] == "ordering"
        }
    assert [(line.sku, line.quantity) for line in order.lines] == [("TEA", 2), ("JAM", 1)]
    assert ordering_statements == {("ordering", "select", "state"): 1}


@pytest.mark.postgres
async def test_on_postgresql_every_check_in_goes_with_its_begin(
    counting: None, provider: HttpPaymentProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop's message ids and handler names are plain enough to be written into the
    check-in (ADR 17 section 12): a round trip per handled message depends on it."""
    sent_with_begin = 0
    begin_with = pg_connection.begin_with

    async def counted(adapter: Any, statement: str) -> str:
        nonlocal sent_with_begin
        sent_with_begin += "_inbox " in statement
        return await begin_with(adapter, statement)

    def reset() -> None:
        nonlocal sent_with_begin
        sent_with_begin = 0

    monkeypatch.setattr(pg_connection, "begin_with", counted)
    async with running_shop(require_postgres(), payment_provider=provider) as runtime:
        await _two_orders_counted(runtime, reset)
        check_ins = sum(
            count for key, count in COUNTS.statements.items() if key[1:] == ("insert", "inbox")
        )
        begun_with = sum(COUNTS.begun_with.values())
    assert check_ins >= 12  # two orders, each through six handlers or more
    assert sent_with_begin == check_ins
    # What the bench reads to tell the round trips (statements + 2 x transactions - these).
    assert begun_with == sent_with_begin


@pytest.mark.postgres
async def test_on_postgresql_checked_writes_go_with_the_outbox_records(
    counting: None, provider: HttpPaymentProvider
) -> None:
    """A handler's checked writes (a saga's step, the stock, a reservation, a charge) go in
    one statement with its outbox records (ADR 17 section 14): a round trip each fewer."""
    async with running_shop(require_postgres(), payment_provider=provider) as runtime:
        await _two_orders_counted(runtime, lambda: None)
        sent_along = dict(COUNTS.sent_along)
        settled = {
            order.status for order in await runtime.bus.ask(ListOrders(), principal=_CUSTOMER)
        }
    assert settled == {"CONFIRMED"}
    assert set(sent_along) == {"ordering", "inventory", "payments"}
    assert sum(sent_along.values()) >= 8 * 2  # two orders


async def _two_orders_counted(runtime: Runtime, reset: Callable[[], None]) -> None:
    """Two orders placed and settled, counted from the start of the second round (the first
    uses each statement once, through SQLAlchemy)."""
    bus = runtime.bus
    await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=100), principal=SYSTEM)
    await bus.send(Restock(sku="TEA", quantity=10), principal=SYSTEM)
    lines = [OrderLineRequest(sku="TEA", quantity=1)]
    for round_ in range(3):
        if round_ == 1:
            COUNTS.clear()
            reset()
        await bus.send(PlaceOrder(lines=lines, payment_token="tok_ok"), principal=_CUSTOMER)
        assert await runtime.settle()


def test_statements_are_told_apart_by_module_kind_and_table() -> None:
    assert classify('SELECT x FROM "ordering_outbox" WHERE id = ?') == (
        "ordering",
        "select",
        "outbox",
    )
    assert classify("INSERT INTO inventory_inbox (handler) VALUES (?)") == (
        "inventory",
        "insert",
        "inbox",
    )
    assert classify("UPDATE ordering_sagas SET step=?") == ("ordering", "update", "state")
    assert classify("DELETE FROM payments_dead_letters") == ("payments", "delete", "dead_letters")
    assert classify("SELECT 1") == ("-", "select", "-")

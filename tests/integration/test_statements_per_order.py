"""The SQL of the order flow, counted with the listener the bench reads
(``CLEAVE_BENCH_COUNT_SQL``): what each look at an order costs (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from adapters.sqlalchemy.statement_counts import COUNTS, classify
from kernel import SYSTEM, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import GetOrder, OrderLineRequest, PlaceOrder
from tests.support.harness import TEST_SETTINGS, running_shop

pytestmark = pytest.mark.anyio


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

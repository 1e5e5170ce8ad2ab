"""On PostgreSQL a unit of work's checked writes wait to go in one statement with its outbox
records (``kernel.write_checked``, ADR 17 section 14). A read of their table sends them first
and sees them; a read of other tables lets them wait."""

from __future__ import annotations

from functools import partial

import pytest

from adapters.sqlalchemy.statement_counts import COUNTS
from kernel import SYSTEM, Transaction
from modules.catalog.contracts import AddProduct
from modules.catalog.module import module as catalog
from modules.inventory.module import module as inventory
from modules.inventory.repository import Reservations, StockRecords
from tests.contracts.inventory.test_lost_updates import two_units, within
from tests.support.harness import running_shop
from tests.support.services import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

STOCK_UPDATES = ("inventory", "update", "state")


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEAVE_BENCH_COUNT_SQL", "1")


async def test_a_read_of_their_table_sees_the_held_writes_one_of_another_lets_them_wait(
    counting: None,
) -> None:
    async with running_shop(require_postgres(), modules=[catalog, inventory]) as runtime:
        await runtime.bus.send(AddProduct(sku="TEA", name="Tea", price_cents=100), principal=SYSTEM)
        assert await runtime.settle()
        stock = StockRecords(Transaction())
        reservations = Reservations(Transaction())
        sent: list[int] = []
        levels: list[int] = []
        for _ in range(2):  # the first round may use a statement for the first time
            async with two_units(runtime) as (unit, _):
                record = await within(unit, lambda: stock.get("TEA"))
                assert record is not None
                record.restock(2)
                before = COUNTS.statements[STOCK_UPDATES]
                await within(unit, partial(stock.save, record))
                await within(unit, lambda: reservations.get("order-1"))  # another table
                sent.append(COUNTS.statements[STOCK_UPDATES] - before)
                again = await within(unit, lambda: stock.get("TEA"))  # its own table
                assert again is not None
                levels.append(again.on_hand)
                sent.append(COUNTS.statements[STOCK_UPDATES] - before)
                await unit.commit()

    # Round two (on the fast path whatever ran before in this process): held past the read
    # of reservations, sent before the read of the stock, which sees it.
    assert sent[2:] == [0, 1]
    assert levels == [2, 4]

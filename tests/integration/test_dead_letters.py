"""What an operator does with dead letters, through the real `cleave dead-letters` command.

A deferred command that its handler refuses for good (a typed domain error) and a row that
cannot even be decoded both end in the dead letters with their reason, without stopping the
relay; the operator lists and reads them, fixes the cause, replays one (it is then delivered
and has its effect) and purges the other.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.storage import SqlStorage, write_transaction
from kernel import SYSTEM
from kernel.clock import SystemClock
from kernel.codec import Codec
from kernel.messages import Envelope
from kernel.registry import Registry
from kernel.runtime import Runtime
from modules.catalog.contracts import AddProduct, ProductAdded
from modules.catalog.module import module as catalog
from modules.inventory.contracts import GetStock, ReserveStock, Restock, SellStock, StockLine
from modules.inventory.module import module as inventory
from tests.support.harness import running_shop
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio

MODULES = [catalog, inventory]


def cleave(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *arguments],
        cwd=ROOT,
        env={**os.environ, "CLEAVE_DATABASE_URL": url, "CLEAVE_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(url: str) -> list[dict[str, Any]]:
    result = cleave(url, "dead-letters", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def until(condition: Any, within: float = 30) -> None:
    end = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < end, "the condition did not hold in time"
        await asyncio.sleep(0.05)


async def emit_from_catalog(runtime: Runtime, url: str, message: Any) -> None:
    """Commit ``message`` to the catalog's outbox, as a catalog handler deferring it would."""
    registry = Registry(MODULES)
    database = Database(url)  # a second connection to the shop's file
    try:
        storage = SqlStorage(
            database, "catalog", registry, Codec(registry.message_types()), SystemClock()
        )
        envelope = Envelope(message_id="operator-test", name="catalog.AddProduct")
        unit = storage.unit_of_work(envelope)
        unit.emit(message)
        await unit.commit()
    finally:
        await database.dispose()
    for relay in runtime.relays:
        relay.notify()


async def test_a_refused_command_is_replayed_once_its_cause_is_fixed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    async with running_shop(url, modules=MODULES) as runtime:
        bus = runtime.bus
        await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
        await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)

        # Selling stock that no order reserved is refused for good (NotFound is final).
        await emit_from_catalog(runtime, url, SellStock(order_id="order-7"))
        await until(lambda: asyncio.to_thread(lambda: bool(listed(url))))
        (letter,) = listed(url)
        assert letter["name"] == "inventory.SellStock"
        assert letter["target"] == "inventory"
        assert letter["attempts"] == 1
        assert "NotFound" in letter["reason"] and "(final)" in letter["reason"]

        shown = cleave(url, "dead-letters", "show", letter["ref"])
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert record["message"] == {"type": "inventory.SellStock", "order_id": "order-7"}
        assert record["envelope"]["causation_id"] == "operator-test"

        # The operator fixes the cause (the reservation), then replays the dead letter.
        lines = [StockLine(sku="TEA", quantity=2)]
        await bus.send(ReserveStock(order_id="order-7", lines=lines), principal=SYSTEM)
        retried = cleave(url, "dead-letters", "retry", letter["ref"])
        assert retried.returncode == 0, retried.stderr
        assert listed(url) == []

        async def sold() -> bool:
            level = await bus.ask(GetStock(sku="TEA"))
            return (level.on_hand, level.reserved) == (3, 0)

        await until(sold)
        assert listed(url) == []
        missing = cleave(url, "dead-letters", "retry", letter["ref"])
        assert missing.returncode == 1 and "no such dead letter" in missing.stderr


async def test_a_poison_row_is_dead_lettered_and_the_relay_goes_on(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    async with running_shop(url, modules=MODULES) as runtime:
        bus = runtime.bus
        outbox = messaging_tables("catalog").outbox
        database = Database(url)
        now = time.time()
        poison = [
            ("catalog.Vanished", '{"message_id":"p1","name":"catalog.Vanished"}', "{}"),
            ("catalog.ProductAdded", "{not an envelope", "{}"),
            (
                "catalog.ProductAdded",
                '{"message_id":"p3","name":"catalog.ProductAdded","version":7}',
                '{"type":"catalog.ProductAdded","sku":"X","name":"X","price_cents":1,"currency":"EUR"}',
            ),
        ]
        async with write_transaction(database) as connection:
            for index, (name, envelope, body) in enumerate(poison):
                await connection.execute(
                    insert(outbox).values(
                        message_id=f"p{index + 1}",
                        target="inventory",
                        name=name,
                        partition=None,
                        envelope=envelope,
                        body=body,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        await database.dispose()
        # A healthy message after the poison still gets through.
        await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
        assert await runtime.settle(30)
        assert (await bus.ask(GetStock(sku="TEA"))).on_hand == 0  # the stock record exists

        reasons = sorted(letter["reason"] for letter in listed(url))
        assert len(reasons) == 3
        assert any("unknown message name 'catalog.Vanished'" in reason for reason in reasons)
        assert any("undecodable envelope" in reason for reason in reasons)
        assert any("schema version 7" in reason for reason in reasons)
        assert ProductAdded.version == 1

        purged = cleave(url, "dead-letters", "purge", "--all")
        assert purged.returncode == 0 and "purged 3" in purged.stdout
        assert listed(url) == []

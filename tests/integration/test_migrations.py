"""Every module's migrations build exactly its tables, and carry data through every revision.

Start-up and the tests build an empty database from the models (``create_all`` and a stamp
of the head, alembic's recipe for a fresh database), so these tests are what proves the
migrations an operator runs with ``cleave db upgrade`` arrive at the same schema:

* an empty SQLite and PostgreSQL database, migrated revision by revision, has exactly the
  models' tables (alembic's comparison finds nothing to add, drop or change);
* a database at each module's first revision, with a shop's worth of rows in it, migrates to
  the head and the current code reads those rows back through the bus;
* a database from before migrations (tables, no version records) is adopted at the first
  revision and migrated on;
* in production a process refuses a database behind its code, and says what to run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.migrations import differences, upgrade
from entrypoints.bootstrap import (
    bootstrap,
    create_tables,
    prepare_schema,
    schema_histories,
    schema_positions,
    shop_modules,
)
from entrypoints.settings import Settings
from kernel import SYSTEM, Bus, Principal
from kernel.errors import ConfigurationError
from modules.catalog.contracts import GetProduct
from modules.identity.contracts import GetUser
from modules.inventory.contracts import GetStock, Restock
from modules.notifications.contracts import ListNotifications
from modules.ordering.contracts import GetOrder
from modules.payments.contracts import GetCharges
from tests.support.harness import TEST_SETTINGS, drop_database, open_database
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio

HISTORIES = [history for module in shop_modules() for history in schema_histories(module)]
ADA = Principal(subject="u-ada", roles=("customer",))
ADMIN = Principal(subject="u-admin", roles=("admin",))

#: A shop's worth of rows, written against the first revision of each module's tables.
FIRST_REVISION_ROWS = [
    "INSERT INTO identity_users VALUES "
    "('u-ada', 'ada@example.com', 'Ada', 'not-a-hash', 'customer', 0, 1.0)",
    "INSERT INTO catalog_products VALUES ('TEA', 'Green tea', '', 450, 'EUR', 1)",
    "INSERT INTO inventory_stock VALUES ('TEA', 10, 2, 4)",
    "INSERT INTO inventory_reservations VALUES ('o-1', 'RESERVED', '{\"TEA\": 2}', NULL, NULL)",
    "INSERT INTO ordering_orders VALUES ('o-1', 'u-ada', 'CONFIRMED', NULL, 900, 'EUR', 2.0, 3)",
    "INSERT INTO ordering_order_lines VALUES ('o-1', 0, 'TEA', 2, 450)",
    "INSERT INTO payments_charges VALUES ('c-1', 'o-1', 900, 'EUR', 'CAPTURED', 'pc-1', NULL, 3.0)",
    "INSERT INTO notifications_notifications VALUES "
    "('n-1', 'u-ada', 'order_confirmed', 'o-1', 'o-1', 'Your order', 'Confirmed.', 4.0)",
    "INSERT INTO ordering_outbox (message_id, target, name, partition, envelope, body, "
    "attempts, next_attempt_at, created_at, last_error) "
    "VALUES ('m-1', 'notifications', 'ordering.OrderConfirmed', 'o-1', '{}', '{}', 0, 9.0, 9.0, "
    "NULL)",
]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = await open_database(database_url)
    try:
        yield database
    finally:
        await drop_database(database)


@contextlib.asynccontextmanager
async def shop_on(database: Database) -> AsyncIterator[Bus]:
    """The shop's bus over ``database`` (the payment provider is never called here)."""
    provider = HttpPaymentProvider.from_settings("http://127.0.0.1:9", TEST_SETTINGS)
    try:
        yield bootstrap(database=database, settings=TEST_SETTINGS, payment_provider=provider).bus
    finally:
        await provider.close()


def first_revisions() -> dict[str, str]:
    return {history.name: str(history.base()) for history in HISTORIES}


async def test_migrating_an_empty_database_builds_exactly_the_models(database: Database) -> None:
    await create_tables(database, from_empty="migrate")

    assert await differences(database, HISTORIES) == []
    assert not [p.describe() for p in await schema_positions(database) if p.behind]
    if database.is_sqlite:
        # Not compared by alembic: outbox ids are never reused (they order deliveries).
        async with database.engine.connect() as connection:
            ddl = (
                await connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'ordering_outbox'")
                )
            ).scalar_one()
        assert "AUTOINCREMENT" in ddl


async def test_a_database_at_the_first_revisions_keeps_its_rows_through_every_later_one(
    database: Database,
) -> None:
    await upgrade(database, HISTORIES, revisions=first_revisions(), from_empty="migrate")
    async with database.engine.begin() as connection:
        for row in FIRST_REVISION_ROWS:
            await connection.execute(text(row))

    await create_tables(database)

    assert await differences(database, HISTORIES) == []
    async with shop_on(database) as bus:
        await reads_the_first_revision_rows(bus)


async def reads_the_first_revision_rows(bus: Bus) -> None:
    assert (await bus.ask(GetUser(user_id="u-ada"), principal=ADA)).email == "ada@example.com"
    assert (await bus.ask(GetProduct(sku="TEA"))).price_cents == 450
    level = await bus.ask(GetStock(sku="TEA"))
    assert (level.on_hand, level.reserved, level.available) == (10, 2, 8)
    order = await bus.ask(GetOrder(order_id="o-1"), principal=ADA)
    assert (order.status, order.total_cents, [line.sku for line in order.lines]) == (
        "CONFIRMED",
        900,
        ["TEA"],
    )
    (charge,) = await bus.ask(GetCharges(order_id="o-1"), principal=ADMIN)
    assert charge.status == "CAPTURED"
    assert [n.subject for n in await bus.ask(ListNotifications(), principal=ADA)] == ["Your order"]
    # The widened stock counts take what the first revision's could not.
    restocked = await bus.send(Restock(sku="TEA", quantity=1_000_000), principal=SYSTEM)
    assert restocked.on_hand == 1_000_010


async def test_tables_from_before_migrations_are_adopted_and_migrated(database: Database) -> None:
    await upgrade(database, HISTORIES, revisions=first_revisions(), from_empty="migrate")
    async with database.engine.begin() as connection:
        await connection.execute(text(FIRST_REVISION_ROWS[2]))
        for history in HISTORIES:
            await connection.execute(text(f"DROP TABLE {history.version_table}"))

    await create_tables(database)

    assert await differences(database, HISTORIES) == []
    assert not [p.describe() for p in await schema_positions(database) if p.behind]
    async with shop_on(database) as bus:
        assert (await bus.ask(GetStock(sku="TEA"))).on_hand == 10


async def test_production_refuses_a_database_behind_its_code(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    production = Settings(env="production")
    try:
        await upgrade(database, HISTORIES, revisions=first_revisions(), from_empty="migrate")
        with pytest.raises(ConfigurationError, match="cleave db upgrade") as refused:
            await prepare_schema(database, shop_modules(), production)
        assert "inventory: inventory_0001 (behind" in str(refused.value)

        await create_tables(database)
        await prepare_schema(database, shop_modules(), production)  # at the head: starts
        await prepare_schema(  # development migrates by itself
            database, shop_modules(), Settings(env="development")
        )
    finally:
        await database.dispose()


async def test_a_module_without_tables_needs_no_database(tmp_path: Path) -> None:
    # A process hosting a module that keeps no state maps no database to it (the trivial
    # service of the benchmarks); start-up must migrate the others and leave it be.
    from bench.trivial.module import module as trivial

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    catalog = next(module for module in shop_modules() if module.name == "catalog")
    try:
        await prepare_schema({"catalog": database}, [trivial, catalog], Settings())
        assert all(not p.behind for p in await schema_positions({"catalog": database}, [catalog]))
    finally:
        await database.dispose()


def cleave(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *arguments],
        cwd=ROOT,
        env={**os.environ, "CLEAVE_LOG_LEVEL": "ERROR", **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cleave_db_upgrades_each_module_in_its_own_database(tmp_path: Path) -> None:
    environment = {"CLEAVE_DATA_DIR": str(tmp_path / "data")}
    split = ["--topology", "topologies/split-http.toml"]

    behind = cleave(environment, "db", "current", *split)
    assert behind.returncode == 1, behind.stderr
    assert "ordering: empty (behind" in behind.stdout

    one = cleave(environment, "db", "upgrade", "inventory", *split)
    assert one.returncode == 0, one.stderr
    assert "inventory: inventory_" in one.stdout and "ordering" not in one.stdout
    assert "ordering: empty (behind" in cleave(environment, "db", "current", *split).stdout

    everything = cleave(environment, "db", "upgrade", *split)
    assert everything.returncode == 0, everything.stderr
    current = cleave(environment, "db", "current", *split)
    assert current.returncode == 0, current.stdout + current.stderr
    assert "behind" not in current.stdout
    for module in ("identity", "catalog", "inventory", "ordering", "payments", "notifications"):
        assert (tmp_path / "data" / f"{module}.db").exists()
        assert f"  {module}: {module}_" in current.stdout
        assert f"  {module} messaging: messaging_0001 (head)" in current.stdout

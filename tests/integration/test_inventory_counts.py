"""Stock counts past 2**31 units, and the ceiling inventory keeps, over the public API.

A warehouse counting screws or grams passes 2**31 units: the count must keep going on
every database (PostgreSQL's 32-bit INTEGER answered 500 there). Past ``MAX_ON_HAND`` (the
largest integer every JSON client reads exactly) a restock is refused with a 400 that names
the field, and the stock is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from adapters.sqlalchemy.database import Database
from entrypoints.app import create_app
from entrypoints.settings import Settings
from modules.inventory.contracts import MAX_ON_HAND, STOCK_LIMIT
from modules.inventory.tables import stock
from tests.support.harness import drop_database

pytestmark = pytest.mark.anyio

ADMIN = {"email": "admin@example.com", "password": "stock keeper 4242"}


@pytest.fixture
async def shop(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Database]]:
    """The app over HTTP, and the database under it (to set a count no test would reach by
    restocking a million units at a time)."""
    if database_url.startswith("postgres"):
        schema: str | None = f"counts_{uuid.uuid4().hex[:10]}"
    else:
        database_url, schema = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}", None
    settings = Settings(
        database_url=database_url,
        database_schema=schema,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        password_hash_cost="low",
        payment_provider_url="http://127.0.0.1:9",  # never called here
        payment_provider_key="unused",
    )
    database = Database(database_url, schema=schema)
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield client, database
    finally:
        await drop_database(database)


async def set_on_hand(database: Database, sku: str, on_hand: int) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(update(stock).where(stock.c.sku == sku).values(on_hand=on_hand))


async def test_stock_counts_past_two_to_the_31_and_stops_at_the_ceiling(
    shop: tuple[Any, Database],
) -> None:
    client, database = shop
    login = await client.post("/api/v1/identity/login", json=ADMIN)
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    product = {"sku": "SCREW", "name": "M3 screw", "price_cents": 1}
    assert (await client.post("/api/v1/catalog/products", json=product, headers=admin)).is_success
    first = await client.post(
        "/api/v1/inventory/SCREW/restock", json={"quantity": 5}, headers=admin
    )
    assert first.status_code == 200, first.text

    await set_on_hand(database, "SCREW", 2**31 - 10)
    past = await client.post(
        "/api/v1/inventory/SCREW/restock", json={"quantity": 1_000_000}, headers=admin
    )
    assert past.status_code == 200, past.text
    assert past.json()["on_hand"] == 2**31 - 10 + 1_000_000
    assert (await client.get("/api/v1/inventory/SCREW")).json()["available"] == 2**31 + 999_990

    await set_on_hand(database, "SCREW", MAX_ON_HAND - 3)
    refused = await client.post(
        "/api/v1/inventory/SCREW/restock", json={"quantity": 4}, headers=admin
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "quantity"
    assert refused.json()["code"] == STOCK_LIMIT
    assert (await client.get("/api/v1/inventory/SCREW")).json()["on_hand"] == MAX_ON_HAND - 3
    exactly = await client.post(
        "/api/v1/inventory/SCREW/restock", json={"quantity": 3}, headers=admin
    )
    assert exactly.status_code == 200 and exactly.json()["on_hand"] == MAX_ON_HAND

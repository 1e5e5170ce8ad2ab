"""Catalog and inventory through the real app over HTTP, over both bus transports.

An admin creates a product and inventory reacts to the catalog's event with a stock record
at zero; restocking shows on the stock; the catalog lists and pages; and every client mistake
is a 4xx problem that says what was wrong, never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.settings import Settings

pytestmark = pytest.mark.anyio

ADMIN = {"email": "admin@example.com", "password": "catalogue keeper 42"}


@pytest.fixture(params=["inprocess", "loopback"])
def transport(request: pytest.FixtureRequest) -> str:
    """The bus inside the one app process (the split over HTTP drives this same API in
    tests/topology/test_deployments.py)."""
    return str(request.param)


@pytest.fixture
async def client(tmp_path: Path, transport: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        bus=transport,  # type: ignore[arg-type]
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        password_hash_cost="low",
        payment_provider_url="http://127.0.0.1:9",  # never called here
        payment_provider_key="unused",
    )
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def admin_headers(client: AsyncTestClient[Any]) -> dict[str, str]:
    answer = await client.post("/api/v1/identity/login", json=ADMIN)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def assert_problem(answer: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


async def test_a_new_product_gets_stock_at_zero_then_restocks(client: AsyncTestClient[Any]) -> None:
    admin = await admin_headers(client)
    product = {"sku": "TEA-1", "name": "Green tea", "price_cents": 450, "currency": "EUR"}
    created = await client.post("/api/v1/catalog/products", json=product, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {**product, "description": "", "version": 0}

    # Inventory hears ProductAdded after the catalog's commit: poll as a client would.
    for _ in range(200):
        level = await client.get("/api/v1/inventory/TEA-1")
        assert level.status_code == 200, level.text
        if level.json() == {"sku": "TEA-1", "on_hand": 0, "reserved": 0, "available": 0}:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no stock record at zero: {level.json()}")

    restocked = await client.post(
        "/api/v1/inventory/TEA-1/restock", json={"quantity": 7}, headers=admin
    )
    assert restocked.status_code == 200, restocked.text
    assert restocked.json() == {"sku": "TEA-1", "on_hand": 7, "reserved": 0, "available": 7}
    assert (await client.get("/api/v1/inventory/TEA-1")).json()["on_hand"] == 7

    changed = await client.patch(
        "/api/v1/catalog/products/TEA-1", json={"price_cents": 500}, headers=admin
    )
    assert changed.status_code == 200 and changed.json()["price_cents"] == 500
    assert (await client.get("/api/v1/catalog/products/TEA-1")).json()["price_cents"] == 500


async def test_the_catalog_lists_in_pages(client: AsyncTestClient[Any]) -> None:
    admin = await admin_headers(client)
    for number in range(5):
        answer = await client.post(
            "/api/v1/catalog/products",
            json={"sku": f"P-{number}", "name": f"Product {number}", "price_cents": 100},
            headers=admin,
        )
        assert answer.status_code == 201
    first = (await client.get("/api/v1/catalog/products", params={"limit": 2})).json()
    rest = (
        await client.get("/api/v1/catalog/products", params={"limit": 10, "after": "P-1"})
    ).json()
    assert [p["sku"] for p in first] == ["P-0", "P-1"]
    assert [p["sku"] for p in rest] == ["P-2", "P-3", "P-4"]


async def test_client_mistakes_are_explained(client: AsyncTestClient[Any]) -> None:
    admin = await admin_headers(client)
    good = {"sku": "TEA-1", "name": "Green tea", "price_cents": 450}
    assert (
        await client.post("/api/v1/catalog/products", json=good, headers=admin)
    ).status_code == 201

    # duplicate SKU
    body = assert_problem(
        await client.post("/api/v1/catalog/products", json=good, headers=admin), 409, "sku"
    )
    assert body["code"] == "catalog.duplicate_sku"
    # unknown SKU
    assert_problem(await client.get("/api/v1/inventory/NOPE"), 404, "sku")
    assert_problem(await client.get("/api/v1/catalog/products/NOPE"), 404, "sku")
    assert_problem(
        await client.post("/api/v1/inventory/NOPE/restock", json={"quantity": 1}, headers=admin),
        404,
    )
    assert_problem(
        await client.patch("/api/v1/catalog/products/NOPE", json={"name": "x"}, headers=admin),
        404,
    )
    # invalid bodies name the field
    assert_problem(
        await client.post(
            "/api/v1/catalog/products", json={**good, "sku": "B", "price_cents": -1}, headers=admin
        ),
        400,
        "price_cents",
    )
    assert_problem(
        await client.post(
            "/api/v1/catalog/products", json={"sku": "B", "price_cents": 1}, headers=admin
        ),
        400,
        "name",
    )
    assert_problem(
        await client.post(
            "/api/v1/catalog/products", json={**good, "sku": "B", "colour": "red"}, headers=admin
        ),
        400,
        "colour",
    )
    assert_problem(
        await client.post(
            "/api/v1/catalog/products", json={**good, "sku": "no spaces"}, headers=admin
        ),
        400,
        "sku",
    )
    assert_problem(
        await client.post(
            "/api/v1/catalog/products",
            content=b"{not json",
            headers={**admin, "content-type": "application/json"},
        ),
        400,
    )
    # negative or zero quantities
    for quantity in (-3, 0):
        assert_problem(
            await client.post(
                "/api/v1/inventory/TEA-1/restock", json={"quantity": quantity}, headers=admin
            ),
            400,
            "quantity",
        )
    assert_problem(await client.get("/api/v1/catalog/products", params={"limit": 0}), 400, "limit")
    assert_problem(await client.get("/api/v1/inventory/bad%20sku"), 400, "sku")
    # NUL characters are refused at the edge (no database stores them in text)
    assert_problem(
        await client.post(
            "/api/v1/catalog/products", json={**good, "sku": "N", "name": "a\u0000b"}, headers=admin
        ),
        400,
    )
    assert_problem(await client.get("/api/v1/catalog/products", params={"after": "a\x00b"}), 400)
    # the stock did not move through all of that
    assert (await client.get("/api/v1/inventory/TEA-1")).json()["on_hand"] == 0


async def test_only_admins_change_the_catalog_and_stock(client: AsyncTestClient[Any]) -> None:
    product = {"sku": "TEA-1", "name": "Green tea", "price_cents": 450}
    assert_problem(await client.post("/api/v1/catalog/products", json=product), 401)
    registered = await client.post(
        "/api/v1/identity/register",
        json={"email": "ada@example.com", "password": "analytical engine", "name": "Ada"},
    )
    assert registered.status_code == 201
    login = await client.post(
        "/api/v1/identity/login", json={"email": "ada@example.com", "password": "analytical engine"}
    )
    customer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert_problem(
        await client.post("/api/v1/catalog/products", json=product, headers=customer), 403
    )
    assert_problem(
        await client.post(
            "/api/v1/inventory/TEA-1/restock", json={"quantity": 1}, headers=customer
        ),
        403,
    )

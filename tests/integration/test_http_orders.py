"""The customer's journey through the real app over HTTP: products and stock from an admin,
orders that are confirmed, cancelled and rejected, privacy between customers, charges for
the admin, notifications for the customer, and bad input answered 400 naming the field.
Nothing a client sends gets a 500."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.demo import run_demo
from entrypoints.settings import Settings

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-42"
PASSWORD = "marmalade-sky-42"
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}


class Shop:
    """An HTTP client of the app that remembers every answer (none may be a 500)."""

    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client
        self.answers: list[tuple[str, str, int]] = []

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        self.answers.append((method, path, response.status_code))
        return response

    async def token(self, email: str, password: str) -> str:
        response = await self.call(
            "POST", "/api/v1/identity/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def customer(self, name: str) -> tuple[str, str]:
        email = f"{name.lower()}@example.com"
        response = await self.call(
            "POST",
            "/api/v1/identity/register",
            json={"email": email, "password": PASSWORD, "name": name},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"], await self.token(email, PASSWORD)

    async def order(self, token: str, lines: list[dict[str, Any]], payment: str) -> dict[str, Any]:
        response = await self.call(
            "POST", "/api/v1/orders", token, json={"lines": lines, "payment_token": payment}
        )
        assert response.status_code == 202, response.text
        order: dict[str, Any] = response.json()
        assert order["status"] == "PENDING"
        return order

    async def settled(self, token: str, order_id: str) -> dict[str, Any]:
        """Poll the order, as a client would, until it is terminal."""
        for _ in range(600):
            response = await self.call("GET", f"/api/v1/orders/{order_id}", token)
            assert response.status_code == 200, response.text
            order: dict[str, Any] = response.json()
            if order["status"] in TERMINAL:
                return order
            await asyncio.sleep(0.05)
        raise AssertionError(f"order {order_id} is still {order['status']}")

    async def stock(self, sku: str) -> dict[str, Any]:
        response = await self.call("GET", f"/api/v1/inventory/{sku}")
        assert response.status_code == 200, response.text
        level: dict[str, Any] = response.json()
        return level

    async def notifications(self, token: str, expected: int) -> list[dict[str, Any]]:
        """The caller's notifications, once ``expected`` of them have arrived."""
        for _ in range(600):
            response = await self.call("GET", "/api/v1/notifications", token)
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()
            if len(found) >= expected:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{expected} notifications expected, got {found}")


@asynccontextmanager
async def running(tmp_path: Path, **settings: Any) -> AsyncIterator[Shop]:
    """The app over a fresh SQLite file, with these settings on top of the tests' own."""
    base = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        jwt_secret="integration-test-secret-0123456789abcdef",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        password_hash_cost="low",
        delivery_backoff_seconds=0.01,
    )
    app = create_app(msgspec.structs.replace(base, **settings))
    async with AsyncTestClient(app=app) as client:
        shop = Shop(client)
        yield shop
    assert all(status < 500 for _, _, status in shop.answers), [
        answer for answer in shop.answers if answer[2] >= 500
    ]


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async with running(tmp_path) as shop:
        yield shop


@pytest.mark.anyio
async def test_a_customer_orders_and_follows_each_order_to_its_end(shop: Shop) -> None:
    admin = await shop.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    for sku, price in (("TEA", 450), ("POT", 2000)):
        response = await shop.call(
            "POST",
            "/api/v1/catalog/products",
            admin,
            json={"sku": sku, "name": sku.title(), "price_cents": price},
        )
        assert response.status_code == 201, response.text
    for sku, quantity in (("TEA", 5), ("POT", 2)):
        response = await shop.call(
            "POST", f"/api/v1/inventory/{sku}/restock", admin, json={"quantity": quantity}
        )
        assert response.status_code == 200, response.text
    ada_id, ada = await shop.customer("Ada")
    _, bob = await shop.customer("Bob")

    # Paid: confirmed, and the stock is sold.
    placed = await shop.order(
        ada, [{"sku": "TEA", "quantity": 2}, {"sku": "POT", "quantity": 1}], "tok_ok"
    )
    assert placed["customer_id"] == ada_id
    assert placed["total_cents"] == 2 * 450 + 2000
    assert [line["unit_price_cents"] for line in placed["lines"]] == [450, 2000]
    confirmed = await shop.settled(ada, placed["id"])
    assert (confirmed["status"], confirmed["reason"]) == ("CONFIRMED", None)
    assert await shop.stock("TEA") == {"sku": "TEA", "on_hand": 3, "reserved": 0, "available": 3}

    # Declined: cancelled, and the reserved stock is back.
    declined = await shop.settled(
        ada, (await shop.order(ada, [{"sku": "TEA", "quantity": 3}], "tok_declined"))["id"]
    )
    # Plain reasons: what the provider said stays in the logs and the admin's charges.
    assert (declined["status"], declined["reason"]) == ("CANCELLED", "payment_declined")
    # The provider failing: cancelled too.
    failed = await shop.settled(
        ada, (await shop.order(ada, [{"sku": "TEA", "quantity": 1}], "tok_error"))["id"]
    )
    assert (failed["status"], failed["reason"]) == ("CANCELLED", "payment_failed")
    assert await shop.stock("TEA") == {"sku": "TEA", "on_hand": 3, "reserved": 0, "available": 3}

    # More than there is: rejected, and nothing is held.
    rejected = await shop.settled(
        ada, (await shop.order(ada, [{"sku": "POT", "quantity": 2}], "tok_ok"))["id"]
    )
    assert rejected["status"] == "REJECTED"
    assert rejected["reason"].startswith("insufficient_stock")
    assert (await shop.stock("POT"))["reserved"] == 0

    # Another customer sees none of it: 404, as if it did not exist.
    response = await shop.call("GET", f"/api/v1/orders/{placed['id']}", bob)
    assert response.status_code == 404
    assert response.json()["code"] == "ordering.order_not_found"
    missing = await shop.call("GET", "/api/v1/orders/no-such-order", bob)
    assert (missing.status_code, missing.json()["code"]) == (404, "ordering.order_not_found")
    assert (await shop.call("GET", "/api/v1/orders", bob)).json() == []
    listed = (await shop.call("GET", "/api/v1/orders", ada)).json()
    assert [order["id"] for order in listed] == [
        rejected["id"],
        failed["id"],
        declined["id"],
        placed["id"],
    ]
    # An admin reads any order, and its charges.
    assert (await shop.call("GET", f"/api/v1/orders/{placed['id']}", admin)).json() == confirmed
    charges = await shop.call("GET", f"/api/v1/payments/{placed['id']}", admin)
    assert charges.status_code == 200, charges.text
    assert [charge["status"] for charge in charges.json()] == ["CAPTURED"]
    assert charges.json()[0]["amount_cents"] == 2900
    declined_charges = (await shop.call("GET", f"/api/v1/payments/{declined['id']}", admin)).json()
    assert [charge["status"] for charge in declined_charges] == ["DECLINED"]
    failed_charges = (await shop.call("GET", f"/api/v1/payments/{failed['id']}", admin)).json()
    assert "the provider answered 500" in failed_charges[0]["reason"]
    assert (await shop.call("GET", f"/api/v1/payments/{placed['id']}", ada)).status_code == 403

    # Ada is told: welcome, confirmed, two cancellations, one rejection.
    notes = await shop.notifications(ada, expected=5)
    by_order = {note["order_id"]: note["subject"] for note in notes}
    assert by_order == {
        None: "Welcome to the shop",
        placed["id"]: "Your order is confirmed",
        declined["id"]: "Your order was cancelled",
        failed["id"]: "Your order was cancelled",
        rejected["id"]: "Your order could not be accepted",
    }
    assert all(note["recipient_id"] == ada_id for note in notes)
    bodies = {note["order_id"]: note["body"] for note in notes}
    assert "was cancelled: the payment could not be processed." in bodies[failed["id"]]
    assert "could not be accepted: not enough stock (POT)." in bodies[rejected["id"]]
    assert not any("provider" in body or "attempts" in body for body in bodies.values())
    assert [note["subject"] for note in await shop.notifications(bob, expected=1)] == [
        "Welcome to the shop"
    ]


#: Bad order bodies, and the field the 400 must name (None: only the status is checked).
BAD_ORDERS: list[tuple[dict[str, Any], str | None]] = [
    ({"lines": [], "payment_token": "tok_ok"}, "lines"),
    (
        {"lines": [{"sku": "TEA", "quantity": 0}], "payment_token": "tok_ok"},
        "lines[0].quantity",
    ),
    (
        {
            "lines": [{"sku": "TEA", "quantity": 1}, {"sku": "TEA", "quantity": 1001}],
            "payment_token": "tok_ok",
        },
        "lines[1].quantity",
    ),
    ({"lines": [{"sku": "NOPE", "quantity": 1}], "payment_token": "tok_ok"}, "lines[0].sku"),
    (
        {
            "lines": [{"sku": "TEA", "quantity": 1}, {"sku": "no such", "quantity": 1}],
            "payment_token": "tok_ok",
        },
        "lines[1].sku",
    ),
    ({"lines": [{"sku": "TEA", "quantity": 1}]}, "payment_token"),
    ({"lines": [{"sku": "TEA", "quantity": 1}], "payment_token": ""}, "payment_token"),
    ({"lines": [{"sku": "TEA", "quantity": "two"}], "payment_token": "x"}, "lines[0].quantity"),
    ({"lines": [{"sku": "TEA", "quantity": 1, "gift": True}], "payment_token": "x"}, "gift"),
    ({"lines": [{"sku": "TEA", "quantity": 1}], "payment_token": "x", "note": 1}, "note"),
    ({"lines": [{"sku": "TEA", "quantity": 1}] * 51, "payment_token": "x"}, "lines"),
    (
        {
            "lines": [{"sku": "TEA", "quantity": 1}, {"sku": "MUG", "quantity": 1}],
            "payment_token": "tok_ok",
        },
        "lines[1].sku",
    ),
]


@pytest.mark.anyio
async def test_bad_orders_are_400_naming_the_field(shop: Shop) -> None:
    admin = await shop.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    for sku, currency in (("TEA", "EUR"), ("MUG", "USD")):
        await shop.call(
            "POST",
            "/api/v1/catalog/products",
            admin,
            json={"sku": sku, "name": sku.title(), "price_cents": 450, "currency": currency},
        )
    _, ada = await shop.customer("Ada")
    for body, field in BAD_ORDERS:
        response = await shop.call("POST", "/api/v1/orders", ada, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        if field is not None:
            # A missing or unknown field is named in the message (msgspec gives no path).
            named = problem.get("field") == field or f"`{field}`" in str(problem.get("errors"))
            assert named, (body, problem)
    assert (await shop.call("GET", "/api/v1/orders", ada)).json() == []


@pytest.mark.anyio
async def test_orders_need_a_token_and_a_body(shop: Shop) -> None:
    anonymous = await shop.call("POST", "/api/v1/orders", json={"lines": [], "payment_token": "x"})
    assert anonymous.status_code == 401
    assert (await shop.call("GET", "/api/v1/orders")).status_code == 401
    assert (await shop.call("GET", "/api/v1/notifications")).status_code == 401
    _, ada = await shop.customer("Ada")
    garbage = await shop.call(
        "POST",
        "/api/v1/orders",
        ada,
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert garbage.status_code == 400
    bad_limit = await shop.call("GET", "/api/v1/orders", ada, params={"limit": 0})
    assert bad_limit.status_code == 400


@pytest.mark.anyio
async def test_the_demo_tells_what_happened(tmp_path: Path) -> None:
    out = io.StringIO()
    await run_demo(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}", out=out)
    told = out.getvalue()
    assert "5 orders: 2 confirmed, 2 cancelled, 1 rejected; 0 units left reserved; " in told
    assert "6 notifications" in told
    for reason in ("payment_declined", "payment_failed", "insufficient_stock"):
        assert reason in told


async def stocked(shop: Shop, quantity: int = 10) -> str:
    """TEA in the catalog with ``quantity`` in stock; the admin's token."""
    admin = await shop.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    response = await shop.call(
        "POST",
        "/api/v1/catalog/products",
        admin,
        json={"sku": "TEA", "name": "Tea", "price_cents": 450},
    )
    assert response.status_code == 201, response.text
    if quantity:
        response = await shop.call(
            "POST", "/api/v1/inventory/TEA/restock", admin, json={"quantity": quantity}
        )
        assert response.status_code == 200, response.text
    return admin


TEA = {"lines": [{"sku": "TEA", "quantity": 1}], "payment_token": "tok_ok"}


@pytest.mark.anyio
async def test_a_retried_order_under_its_idempotency_key_is_placed_and_charged_once(
    shop: Shop,
) -> None:
    # Issue 11, item 4: the same body with the same key made two orders and two captures.
    admin = await stocked(shop)
    _, ada = await shop.customer("Ada")
    key = {"Idempotency-Key": "3f0c2a4e-order-1"}
    first = await shop.call("POST", "/api/v1/orders", ada, json=TEA, headers=key)
    assert first.status_code == 202, first.text
    confirmed = await shop.settled(ada, first.json()["id"])
    again = await shop.call("POST", "/api/v1/orders", ada, json=TEA, headers=key)
    assert again.status_code == 202, again.text
    assert again.json() == confirmed
    listed = (await shop.call("GET", "/api/v1/orders", ada)).json()
    assert [order["id"] for order in listed] == [confirmed["id"]]
    charges = (await shop.call("GET", f"/api/v1/payments/{confirmed['id']}", admin)).json()
    assert [charge["status"] for charge in charges] == ["CAPTURED"]
    assert (await shop.stock("TEA"))["on_hand"] == 9

    # Another order under the same key: 422, naming the header (as its 400s do).
    other = {**TEA, "lines": [{"sku": "TEA", "quantity": 2}]}
    refused = await shop.call("POST", "/api/v1/orders", ada, json=other, headers=key)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert (problem["code"], problem["field"]) == (
        "ordering.idempotency_key_reused",
        "idempotency_key",
    )
    # Another customer's key of the same name is theirs.
    _, bob = await shop.customer("Bob")
    bobs = await shop.call("POST", "/api/v1/orders", bob, json=TEA, headers=key)
    assert bobs.status_code == 202 and bobs.json()["id"] != confirmed["id"]


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tin", " padded", "caf\u00e9"])
async def test_a_malformed_idempotency_key_is_400(shop: Shop, key: str) -> None:
    await stocked(shop, quantity=0)
    _, ada = await shop.customer("Ada")
    response = await shop.call(
        "POST", "/api/v1/orders", ada, json=TEA, headers={"Idempotency-Key": key.encode("latin-1")}
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["field"], problem["errors"][0]["in"]) == ("idempotency_key", "header")
    assert (await shop.call("GET", "/api/v1/orders", ada)).json() == []


@pytest.mark.anyio
async def test_the_idempotency_key_and_the_refusals_are_in_the_openapi(shop: Shop) -> None:
    schema = (await shop.call("GET", "/schema/openapi.json")).json()
    place = schema["paths"]["/api/v1/orders"]["post"]
    header = next(p for p in place["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["required"] is False
    assert header["schema"]["maxLength"] == 255
    assert {"202", "409", "422", "429"} <= set(place["responses"])
    assert "Idempotency-Key" in place["description"]


@pytest.mark.anyio
async def test_a_customer_ordering_too_fast_or_with_too_many_pending_is_refused(
    tmp_path: Path,
) -> None:
    # Issue 11, item 12: one customer stored 10,000 rejected orders in 75 s.
    async with running(tmp_path, orders_per_minute=3) as shop:
        await stocked(shop, quantity=0)  # every order is rejected at once
        _, ada = await shop.customer("Ada")
        for _ in range(3):
            assert (await shop.call("POST", "/api/v1/orders", ada, json=TEA)).status_code == 202
        refused = await shop.call("POST", "/api/v1/orders", ada, json=TEA)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "ordering.too_many_orders"
        assert int(refused.headers["Retry-After"]) > 0
        _, bob = await shop.customer("Bob")
        assert (await shop.call("POST", "/api/v1/orders", bob, json=TEA)).status_code == 202
        assert len((await shop.call("GET", "/api/v1/orders", ada)).json()) == 3
    async with running(tmp_path / "open", max_open_orders=1, order_timeout_seconds=60) as shop:
        await stocked(shop)
        _, ada = await shop.customer("Ada")
        slow = {**TEA, "payment_token": "tok_slow"}  # PENDING while the provider thinks
        assert (await shop.call("POST", "/api/v1/orders", ada, json=slow)).status_code == 202
        refused = await shop.call("POST", "/api/v1/orders", ada, json=TEA)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "ordering.too_many_open_orders"

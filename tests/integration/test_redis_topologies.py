"""The shop journey over RabbitMQ gives what the monolith gives.

The same user journey (an admin adds products and stock, a customer registers and places
orders that are paid, declined, failed by the provider, and bigger than the stock) through
the public API of the monolith and of split-redis with ``CLEAVE_BROKER=rabbitmq``. Every
answer, order status and reason, stock level, notification and charge must be the same, and
nothing may end in a dead letter. (split-redis and mixed-redis on Redis play the generated
workload of tests/topology/test_deployments.py.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from entrypoints.up import Deployment
from tests.support.deployments import ADMIN_EMAIL, ADMIN_PASSWORD, dead_letters, deployed
from tests.support.invariants import check_shop
from tests.support.shop_client import ShopClient

pytestmark = pytest.mark.slow

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
RESTOCKED = {"J-TEA": 10, "J-POT": 2, "J-HONEY": 4}
ORDERS = [
    ([("J-TEA", 2), ("J-HONEY", 1)], "tok_ok"),
    ([("J-POT", 1)], "tok_declined"),
    ([("J-HONEY", 1)], "tok_error"),
    ([("J-POT", 5)], "tok_ok"),
    ([("J-POT", 1), ("J-HONEY", 2)], "tok_ok"),
]
EXPECTED = [
    ("CONFIRMED", None),
    ("CANCELLED", "payment_declined"),
    ("CANCELLED", "payment_failed"),
    ("REJECTED", "insufficient_stock"),
    ("CONFIRMED", None),
]


# split-redis and mixed-redis on Redis play the generated workload of
# tests/topology/test_deployments.py beside the monolith; RabbitMQ gets this fixed journey.
@pytest.mark.parametrize(
    ("topology", "broker"),
    [("monolith", None), pytest.param("split-redis", "rabbitmq", marks=pytest.mark.soak)],
)
def test_the_journey_gives_the_monoliths_results(
    topology: str, broker: str | None, tmp_path: Path
) -> None:
    environment = {"CLEAVE_BROKER": broker} if broker else {}
    with (
        deployed(topology, tmp_path, environment) as deployment,
        ShopClient(deployment.gateway_url) as shop,
    ):
        observed = journey(deployment, shop)
    assert observed == {
        "orders": EXPECTED,
        "stock": {"J-TEA": (8, 0), "J-POT": (1, 0), "J-HONEY": (1, 0)},
        "notifications": 6,
        "errors": [],
    }


def journey(deployment: Deployment, shop: ShopClient) -> dict[str, Any]:
    admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    for sku, quantity in RESTOCKED.items():
        assert shop.add_product(admin, sku, 300).status == 201
        assert shop.restock(admin, sku, quantity).status == 200
    assert shop.add_product(admin, "J-TEA", 1).status == 409  # a duplicate is a typed error
    assert shop.call("GET", "/api/v1/catalog/products/NOPE").status == 404
    customer = f"j-{uuid.uuid4().hex[:8]}@example.com"
    assert shop.register(customer, "Ada").status == 201
    token = shop.log_in(customer)
    placed = []
    for lines, payment in ORDERS:
        answer = shop.place_order(token, lines, payment)
        assert answer.status == 202, answer
        placed.append(shop.settled(token, answer.body["id"], within=60))
    stock = {sku: shop.call("GET", f"/api/v1/inventory/{sku}").body for sku in RESTOCKED}
    notes = shop.eventually("/api/v1/notifications", token, count=len(ORDERS) + 1)
    provider = deployment.environ["CLEAVE_PAYMENT_PROVIDER_URL"]
    ledger = httpx.get(f"{provider}/v1/charges", timeout=10).json()
    orders = {order["id"]: order for order in placed}
    check_shop(orders, [c for c in ledger if c["reference"] in orders], stock, RESTOCKED)
    return {
        "orders": [
            (order["status"], (order.get("reason") or "").split(":")[0] or None) for order in placed
        ],
        "stock": {sku: (level["on_hand"], level["reserved"]) for sku, level in stock.items()},
        "notifications": len(notes),
        "errors": [answer for answer in shop.answers if answer[2] >= 500]
        + dead_letters(deployment),
    }

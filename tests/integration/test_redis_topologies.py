"""The shop journey on every queue topology gives what the monolith gives.

The same user journey (an admin adds products and stock, a customer registers and places
orders that are paid, declined, failed by the provider, and bigger than the stock) through
the public API of: the monolith, split-redis (every module a dramatiq worker on Redis),
mixed-redis (catalog over HTTP, the rest over Redis) and split-redis over RabbitMQ
(``CLEAVE_BROKER=rabbitmq``). Every answer, order status and reason, stock level,
notification and charge must be the same.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from adapters.bus.redis.config import QueueConfig
from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.up import Deployment
from tests.integration.test_redis_faults import dead_letters
from tests.support.deployments import ADMIN_EMAIL, ADMIN_PASSWORD, deployed
from tests.support.invariants import check_shop
from tests.support.services import REDIS_URL, require
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


@pytest.mark.parametrize(
    ("topology", "broker"),
    [
        ("monolith", None),
        ("split-redis", "redis"),
        ("mixed-redis", "redis"),
        ("split-redis", "rabbitmq"),
    ],
)
def test_the_journey_gives_the_monoliths_results(
    topology: str, broker: str | None, tmp_path: Path
) -> None:
    with (
        running(topology, broker, tmp_path) as deployment,
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


@contextlib.contextmanager
def running(topology: str, broker: str | None, directory: Path) -> Iterator[Deployment]:
    namespace = f"j{uuid.uuid4().hex[:10]}"
    environment = {"CLEAVE_QUEUE_NAMESPACE": namespace, "CLEAVE_REDIS_URL": REDIS_URL}
    if broker is not None:
        require("Redis", REDIS_URL, 6379, "CLEAVE_TEST_REDIS_URL")  # replies, with either
        environment["CLEAVE_BROKER"] = broker
    if broker == "rabbitmq":
        require("RabbitMQ", RABBITMQ_URL, 5672, "CLEAVE_RABBITMQ_URL")
        environment["CLEAVE_RABBITMQ_URL"] = RABBITMQ_URL
    try:
        with deployed(topology, directory, environment) as deployment:
            yield deployment
    finally:
        if broker is not None:
            forget(QueueConfig(broker=broker, namespace=namespace))  # type: ignore[arg-type]


def forget(config: QueueConfig) -> None:
    """Remove what a test deployment left in the brokers."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{config.namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    if config.broker == "rabbitmq":
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        for module in SHOP_PACKAGES:
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(config.queue(module) + suffix)
        connection.close()

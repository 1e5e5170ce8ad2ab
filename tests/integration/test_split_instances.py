"""Two instances of inventory on PostgreSQL under load, as real processes.

Over HTTP, calls to inventory spread round-robin over both instances; over Redis, two
workers take turns at inventory's one queue. Either way both relays read inventory's one
outbox, and yet no record is delivered twice (the receivers count every delivery and every
repeat their inbox dropped), both instances take a share of the work, and every order ends.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.topology import module_variable
from entrypoints.up import Deployment
from tests.support.deployments import ADMIN_EMAIL, ADMIN_PASSWORD, deployed, topology_file
from tests.support.harness import SyncDriver
from tests.support.invariants import check_shop
from tests.support.shop_client import ShopClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.soak]

ORDERS = 60


def deliveries(url: str) -> Counter[tuple[str, str]]:
    """What one process's /metrics says its handlers received: (handler, outcome) -> count."""
    found: Counter[tuple[str, str]] = Counter()
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = re.match(
            r'cleave_deliveries_total\{handler="([^"]+)",outcome="(\w+)"\} (\S+)', line
        )
        if match:
            found[(match[1], match[2])] += int(float(match[3]))
    return found


#: The inventory service of each split topology, as its file declares it.
INVENTORY = {
    "split-http": '[services.inventory]\nmodules = ["inventory"]\nport = 8103',
    "split-redis": (
        '[services.inventory]\nmodules = ["inventory"]\ntransport = "redis"\nport = 8303'
    ),
}


@pytest.mark.parametrize("split", sorted(INVENTORY))
def test_two_inventory_instances_never_deliver_a_record_twice(
    split: str, postgres_url: str, tmp_path: Path, driver: SyncDriver
) -> None:
    schema = f"inst_{uuid.uuid4().hex[:10]}"
    topology = tmp_path / f"{split}-two-inventories.toml"
    one = INVENTORY[split]
    topology.write_text(
        # Port 8x30 onwards: the next port up belongs to another service.
        topology_file(split).read_text().replace(one, one.replace("03", "30") + "\ninstances = 2")
    )
    assert "instances = 2" in topology.read_text()
    environment = {module_variable(m, "DATABASE_URL"): postgres_url for m in SHOP_PACKAGES}
    environment["CLEAVE_DATABASE_SCHEMA"] = schema
    try:
        with deployed_file(topology, tmp_path, environment) as deployment:
            run_load(deployment)
    finally:
        driver.run(drop_schema(postgres_url, schema))


def run_load(split: Deployment) -> None:
    inventories = [child for child in split.children if child.label.startswith("inventory")]
    assert len(inventories) == 2
    with ShopClient(split.gateway_url, timeout=30) as shop:
        admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        restocked = {f"I-{n}": 30 for n in range(4)}
        for sku, quantity in restocked.items():
            assert shop.add_product(admin, sku, 250).status == 201
            assert shop.restock(admin, sku, quantity).status == 200
        assert shop.register("load@example.com", "Load").status == 201
        token = shop.log_in("load@example.com")

        def place(number: int) -> str:
            with ShopClient(split.gateway_url, timeout=30) as client:
                answer = client.place_order(token, [(f"I-{number % 4}", 1 + number % 3)], "tok_ok")
                assert answer.status == 202, answer
                return str(answer.body["id"])

        with ThreadPoolExecutor(8) as pool:
            placed = list(pool.map(place, range(ORDERS)))
        orders = {order_id: shop.settled(token, order_id, within=120) for order_id in placed}
        stock = {sku: shop.call("GET", f"/api/v1/inventory/{sku}").body for sku in restocked}
        provider = split.environ["CLEAVE_PAYMENT_PROVIDER_URL"]
        charges = httpx.get(f"{provider}/v1/charges", timeout=10).json()
        statuses = check_shop(orders, charges, stock, restocked)
    assert sum(statuses.values()) == ORDERS

    # Inventory's outbox (read by both instances) feeds ordering: once each, never twice.
    ordering = deliveries(split.child("ordering").url)
    repeats = {key: count for key, count in ordering.items() if key[1] == "repeat"}
    assert not repeats, f"delivered twice: {repeats}"
    reserved = ordering[("ordering.on_stock_reserved", "handled")]
    failed = ordering[("ordering.on_stock_reservation_failed", "handled")]
    assert reserved + failed == ORDERS
    # And both instances took their share of the calls to inventory.
    for child in inventories:
        handled = deliveries(child.url)[("inventory.reserve_stock", "handled")]
        assert handled > 0, f"{child.label} never got a reservation"


def deployed_file(path: Path, directory: Path, environment: dict[str, str]):  # type: ignore[no-untyped-def]
    return deployed(path.stem, directory, environment, path=path)


async def drop_schema(url: str, schema: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()

"""The shop split over Redis queues, as real processes, through faults a deployment meets.

* A worker killed with SIGKILL in the middle of 200 orders (no shutdown of any kind: what it
  had fetched stays unacked in Redis) and started again: every order ends, nothing is
  charged twice, the stock adds up, nothing is in the dead letters.
* Redis itself stopped for a few seconds in the middle of the orders (a redis-server of this
  test's own, with append-only persistence, never the shared one) and started again: the
  workload completes and nothing is lost.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from entrypoints.up import Deployment
from tests.support.deployments import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    dead_letters,
    deployed,
    free_ports,
)
from tests.support.invariants import check_shop
from tests.support.services import REDIS_URL, require
from tests.support.shop_client import TERMINAL, ShopClient

pytestmark = [pytest.mark.slow, pytest.mark.soak]

ORDERS = 200
RESTOCKED = {"Q-TEA": 150, "Q-POT": 150, "Q-CUP": 150}

#: Deliveries keep trying while a worker or Redis comes back, no order may end by timing out
#: (a lost message must show as an order that never ends, not as a cancel), and a relay
#: notices a lost delivery after 3 s instead of 30.
ENVIRONMENT = {
    "CLEAVE_DELIVERY_ATTEMPTS": "14",
    "CLEAVE_ORDER_TIMEOUT_SECONDS": "600",
    "CLEAVE_DELIVERY_ACK_TIMEOUT_SECONDS": "3",
    "CLEAVE_REMOTE_TIMEOUT_SECONDS": "3",
}


def split_redis(directory: Path, redis_url: str) -> Any:
    """split-redis on ``redis_url``, in a namespace of its own."""
    environment = {**ENVIRONMENT, "CLEAVE_REDIS_URL": redis_url, "CLEAVE_BROKER": "redis"}
    return deployed("split-redis", directory, environment)


def test_a_killed_worker_loses_no_order_and_charges_none_twice(tmp_path: Path) -> None:
    require("Redis", REDIS_URL, 6379, "CLEAVE_TEST_REDIS_URL")
    with split_redis(tmp_path, REDIS_URL) as split, ShopClient(split.gateway_url) as shop:
        token = prepare(shop)
        placed: list[str] = []
        for number in range(ORDERS):
            if number == ORDERS // 3:
                split.kill("payments")  # with captures in flight and queued
            if number == ORDERS // 3 + 20:
                split.restart("payments")
            if number == ORDERS // 2:
                split.kill("inventory")
            if number == ORDERS // 2 + 20:
                split.restart("inventory")
            answer = place(shop, token, number)
            assert answer.status == 202, answer  # the gateway and ordering never went away
            placed.append(answer.body["id"])
        settle_and_check(split, shop, token, placed)


def test_redis_stopped_mid_run_and_started_again_loses_nothing(tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed here")
    port = free_ports(1)
    with own_redis(server, port, tmp_path / "redis") as restart:
        url = f"redis://127.0.0.1:{port}/0"
        with split_redis(tmp_path, url) as split, ShopClient(split.gateway_url) as shop:
            token = prepare(shop)
            placed: list[str] = []
            refused = 0
            outage = threading.Thread(target=restart, args=(3.0,))
            give_up = time.monotonic() + 60
            for number in range(100):
                if number == 30:
                    outage.start()  # Redis goes away for 3 s while orders keep coming
                    give_up = time.monotonic() + 60
                while True:
                    answer = place(shop, token, number)
                    if answer.status != 503:
                        break
                    # Redis away: the caller is told so, at once or at its deadline, and
                    # tries again, as a client would; once Redis is back, orders go through.
                    refused += 1
                    assert time.monotonic() < give_up, "still refused a minute after the outage"
                    time.sleep(0.05)
                assert answer.status == 202, answer
                placed.append(answer.body["id"])
            outage.join()
            assert refused > 0, "the orders did not meet the outage"
            # Orders refused with 503 may exist all the same (the reply was what got lost):
            # every order the customer has must end, not only those accepted.
            settle_and_check(split, shop, token, placed, every_order=True)


# -- the workload ------------------------------------------------------------------------------


def prepare(shop: ShopClient) -> str:
    """Products with stock, and a customer; the customer's token."""
    admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    for sku, quantity in RESTOCKED.items():
        assert shop.add_product(admin, sku, 250).status == 201
        assert shop.restock(admin, sku, quantity).status == 200
    customer = f"c-{uuid.uuid4().hex[:8]}@example.com"
    assert shop.register(customer, "Queued").status == 201
    return shop.log_in(customer)


def place(shop: ShopClient, token: str, number: int) -> Any:
    skus = sorted(RESTOCKED)
    lines = [(skus[number % 3], 1), (skus[(number + 1) % 3], 1 + number % 2)][: 1 + number % 2]
    return shop.place_order(token, lines, "tok_ok")


def settle_and_check(
    split: Deployment, shop: ShopClient, token: str, placed: list[str], every_order: bool = False
) -> None:
    orders = {order_id: shop.settled(token, order_id, within=120) for order_id in placed}
    if every_order:
        end = time.monotonic() + 120
        while True:
            listed = shop.call("GET", "/api/v1/orders", token, params={"limit": 500}).body
            if all(order["status"] in TERMINAL for order in listed) or time.monotonic() > end:
                break
            time.sleep(0.5)
        orders.update({order["id"]: order for order in listed})
    provider = split.environ["CLEAVE_PAYMENT_PROVIDER_URL"]
    ledger = httpx.get(f"{provider}/v1/charges", timeout=10).json()
    ours = [charge for charge in ledger if charge["reference"] in orders]
    stock = {sku: shop.call("GET", f"/api/v1/inventory/{sku}").body for sku in RESTOCKED}
    statuses = check_shop(orders, ours, stock, RESTOCKED)
    assert statuses == {"CONFIRMED": len(orders)}, statuses  # enough stock, cards that pay
    assert not [answer for answer in shop.answers if answer[2] == 500], "a 500 answered"
    assert dead_letters(split) == []


# -- a Redis of this test's own ----------------------------------------------------------------


@contextlib.contextmanager
def own_redis(server: str, port: int, directory: Path) -> Iterator[Any]:
    """redis-server on ``port`` with append-only persistence in ``directory``; yields
    ``restart(seconds)``, which stops it (SIGTERM: it writes what it has), waits, starts it."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        server,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    log = (directory / "redis.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=port, socket_timeout=1).ping():
                    return process
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on {port}")

    current = [start()]

    def restart(seconds: float) -> None:
        current[0].send_signal(signal.SIGTERM)
        current[0].wait(timeout=30)
        time.sleep(seconds)
        current[0] = start()

    try:
        yield restart
    finally:
        current[0].send_signal(signal.SIGTERM)
        try:
            current[0].wait(timeout=30)
        except subprocess.TimeoutExpired:
            current[0].kill()
        log.close()

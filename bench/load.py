"""Driving a running shop through its REST API: seed it, then place orders and time them.

An order's latency runs from the moment it was due to be placed (open loop) or was placed
(closed loop) until a ``GET`` first shows it CONFIRMED, REJECTED or CANCELLED. A waiting client
(``wait``, the default) asks ``GET /orders/{id}?wait=SECONDS``, which answers when the order
settles. A polling client (``wait=None``) asks after ``poll`` seconds, then backs off to a tenth
of the time already waited (at most 100 ms apart): a latency reads at most about 10% high (or
100 ms), and the polls, which the server serves too, stay few. Every topology gets the same
client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.deployment import ADMIN_EMAIL, ADMIN_PASSWORD, Deployment
from bench.statements import SqlCounts, per_order, round_trips_per_order, scrape
from bench.timing import percentile

TERMINAL = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})
#: Polling backs off to this fraction of the time already waited, and at most this interval.
POLL_FRACTION = 0.1
POLL_CEILING = 0.1
#: An order not terminal after this long is counted as STUCK (the saga's own timeout is 60 s).
ORDER_TIMEOUT = 90.0
#: If none of this many first orders settles, the shop does not work: stop.
FAILFAST = 10
#: What a waiting client asks for: the API's longest wait.
WAIT_SECONDS = 30
#: How long after a load its statements are read: the notifications and outbox removals
#: that follow the last orders' settling belong to them.
SETTLE_SECONDS = 0.3
#: How long after an open loop's window its orders may still settle and count as kept up.
KEPT_UP_GRACE = 1.0


class ShopNotReady(Exception):
    """The shop answered something other than the documented API (e.g. a 500 from a stub)."""


@dataclass
class Shop:
    """A seeded shop and a client for it: products with stock, and logged-in customers."""

    client: httpx.AsyncClient
    skus: list[str]
    customers: list[dict[str, str]]
    random: random.Random = field(default_factory=lambda: random.Random(7))

    def order(self) -> dict[str, Any]:
        """A plausible order: one to three different products, one or two of each."""
        skus = self.random.sample(self.skus, self.random.randint(1, 3))
        lines = [{"sku": sku, "quantity": self.random.randint(1, 2)} for sku in skus]
        return {"lines": lines, "payment_token": "tok_ok"}


def _expect(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in codes:
        raise ShopNotReady(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response.json()


async def _token(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    body = _expect(
        await client.post("/api/v1/identity/login", json={"email": email, "password": password}),
        200,
        201,
    )
    return {"authorization": f"Bearer {body['access_token']}"}


@contextlib.asynccontextmanager
async def seeded(
    deployment: Deployment, *, products: int = 20, customers: int = 16, stock: int = 1_000_000
) -> Any:
    """Products with ``stock`` units each and ``customers`` logged-in customers."""
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(
        base_url=deployment.base_url, timeout=ORDER_TIMEOUT, limits=limits
    ) as client:
        admin = await _token(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        skus = [f"BENCH-{number:03d}" for number in range(products)]
        for number, sku in enumerate(skus):
            _expect(
                await client.post(
                    "/api/v1/catalog/products",
                    headers=admin,
                    json={
                        "sku": sku,
                        "name": f"Bench product {number}",
                        "price_cents": 100 + 37 * number,
                        "currency": "EUR",
                    },
                ),
                200,
                201,
            )
            _expect(
                await client.post(
                    f"/api/v1/inventory/{sku}/restock", headers=admin, json={"quantity": stock}
                ),
                200,
                201,
            )
        headers = []
        for number in range(customers):
            email, password = f"customer{number}@example.com", "customer-password-1"
            _expect(
                await client.post(
                    "/api/v1/identity/register",
                    json={"email": email, "password": password, "name": f"Customer {number}"},
                ),
                200,
                201,
            )
            headers.append(await _token(client, email, password))
        yield Shop(client=client, skus=skus, customers=headers)


@dataclass
class Outcome:
    """One order: how long it took to settle, how it ended, how many polls that took.

    ``status`` is the order's terminal status, or what went wrong instead: ``HTTP 500``,
    ``STUCK`` (not terminal after ``ORDER_TIMEOUT``), or the client's exception name.
    """

    latency_s: float
    status: str
    polls: int
    #: When the order was due, in seconds from the start of an open loop's window.
    due_s: float = 0.0

    @property
    def settled(self) -> bool:
        return self.status in TERMINAL


def next_poll(elapsed: float, floor: float) -> float:
    """Wait before the next look: ``floor`` at first, then a fraction of the time already
    waited, up to ``POLL_CEILING``. So latencies read at most ~``POLL_FRACTION`` high, and a
    slow order costs the server a few polls, not hundreds."""
    return min(POLL_CEILING, max(floor, POLL_FRACTION * elapsed))


async def place_and_wait(
    shop: Shop,
    headers: dict[str, str],
    poll: float,
    started: float | None = None,
    wait: int | None = WAIT_SECONDS,
) -> Outcome:
    """Place one order and wait for it (``wait``) or poll it (``wait=None``) until it is
    terminal, or give up on it."""
    started = time.perf_counter() if started is None else started
    polls = 0
    params = {"wait": wait} if wait else None
    try:
        response = await shop.client.post("/api/v1/orders", headers=headers, json=shop.order())
        if response.status_code != 202:
            return Outcome(time.perf_counter() - started, f"HTTP {response.status_code}", 0)
        body = response.json()
        status = body["status"]
        while status not in TERMINAL:
            elapsed = time.perf_counter() - started
            if elapsed > ORDER_TIMEOUT:
                return Outcome(elapsed, "STUCK", polls)
            if params is None:
                await asyncio.sleep(next_poll(elapsed, poll))
            polls += 1
            response = await shop.client.get(
                f"/api/v1/orders/{body['id']}", headers=headers, params=params
            )
            if response.status_code != 200:
                return Outcome(time.perf_counter() - started, f"HTTP {response.status_code}", polls)
            status = response.json()["status"]
    except httpx.HTTPError as error:
        return Outcome(time.perf_counter() - started, type(error).__name__, polls)
    return Outcome(time.perf_counter() - started, status, polls)


@dataclass
class LoadResult:
    """What one load run measured."""

    outcomes: list[Outcome]
    elapsed_s: float
    #: CPU cores the deployment used (all its processes), averaged over the run.
    server_cores: float
    #: CPU cores the benchmark process (the load generator) used.
    client_cores: float
    offered_per_s: float | None = None
    #: CPU cores each service of the deployment used, averaged over the run.
    cores_by_service: dict[str, float] = field(default_factory=dict)
    #: SQL statements and transactions the deployment ran over the run (None: not counted).
    sql: SqlCounts | None = None

    @property
    def statements_per_order(self) -> float:
        """SQL statements per settled order (NaN when not counted)."""
        return per_order(self.sql, self.completed)[0]

    @property
    def transactions_per_order(self) -> float:
        """SQL transactions per settled order (NaN when not counted)."""
        return per_order(self.sql, self.completed)[1]

    @property
    def round_trips_per_order(self) -> float:
        """Round trips to the database per settled order (NaN when not counted); only
        PostgreSQL's are network round trips (``SqlCounts.round_trips``)."""
        return round_trips_per_order(self.sql, self.completed)

    @property
    def completed(self) -> int:
        """Orders that reached a terminal state."""
        return sum(1 for outcome in self.outcomes if outcome.settled)

    @property
    def failed(self) -> int:
        """Orders that errored or got stuck."""
        return len(self.outcomes) - self.completed

    def settled_in_time(self, window: float, grace: float = KEPT_UP_GRACE) -> int:
        """Orders of an open loop that settled by the end of its ``window`` plus ``grace``:
        fewer than were offered means the deployment fell behind the load."""
        return sum(
            1
            for outcome in self.outcomes
            if outcome.settled and outcome.due_s + outcome.latency_s <= window + grace
        )

    @property
    def per_second(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def cpu_ms_per_order(self) -> float:
        """CPU milliseconds the deployment spent (all its processes) per settled order."""
        if not self.completed:
            return float("nan")
        return self.server_cores * self.elapsed_s / self.completed * 1000

    def latency_ms(self, fraction: float) -> float:
        """A percentile of the latencies of the settled orders, in milliseconds."""
        settled = [outcome.latency_s for outcome in self.outcomes if outcome.settled]
        return percentile(settled, fraction) * 1000

    @property
    def statuses(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)

    @property
    def polls_per_order(self) -> float:
        return sum(o.polls for o in self.outcomes) / max(1, len(self.outcomes))


def _check_working(outcomes: list[Outcome]) -> None:
    """Stop early when the shop does not work at all (say, its handlers are still stubs)."""
    if len(outcomes) == FAILFAST and not any(outcome.settled for outcome in outcomes):
        raise ShopNotReady(
            f"none of the first {FAILFAST} orders settled: "
            + ", ".join(sorted({outcome.status for outcome in outcomes}))
        )


class _Meter:
    """CPU of the deployment and of this process between ``start`` and ``stop``."""

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._server = self._deployment.cpu_seconds_by_service()
        self._client = time.process_time()

    def stop(self) -> tuple[float, float, float]:
        wall = time.perf_counter() - self._wall
        now = self._deployment.cpu_seconds_by_service()
        self.by_service = {
            name: (spent - self._server.get(name, 0.0)) / wall for name, spent in now.items()
        }
        server = sum(self.by_service.values())
        client = (time.process_time() - self._client) / wall
        return wall, server, client


async def closed_loop(
    shop: Shop,
    deployment: Deployment,
    *,
    orders: int,
    concurrency: int,
    time_limit: float,
    poll: float,
    progress: Callable[[int], None] | None = None,
    wait: int | None = WAIT_SECONDS,
) -> LoadResult:
    """``concurrency`` customers each place an order, wait for it, and place the next, until
    ``orders`` have settled or ``time_limit`` has passed."""
    outcomes: list[Outcome] = []
    placed = 0
    deadline = time.perf_counter() + time_limit

    async def customer(headers: dict[str, str]) -> None:
        nonlocal placed
        while placed < orders and time.perf_counter() < deadline:
            placed += 1
            outcome = await place_and_wait(shop, headers, poll, wait=wait)
            outcomes.append(outcome)
            _check_working(outcomes)
            if progress is not None and outcome.settled:
                progress(sum(1 for o in outcomes if o.settled))

    sql_before = await scrape(deployment.urls)
    meter = _Meter(deployment)
    meter.start()
    await asyncio.gather(
        *(customer(shop.customers[n % len(shop.customers)]) for n in range(concurrency))
    )
    wall, server, client = meter.stop()
    return LoadResult(
        outcomes,
        wall,
        server,
        client,
        cores_by_service=meter.by_service,
        sql=await _sql_since(deployment, sql_before),
    )


async def _sql_since(deployment: Deployment, before: SqlCounts | None) -> SqlCounts | None:
    """What the deployment ran since ``before``, once its relays have delivered what the
    orders left (their reactions are part of an order's cost)."""
    if before is None:
        return None
    await asyncio.sleep(SETTLE_SECONDS)
    after = await scrape(deployment.urls)
    return None if after is None else after - before


async def open_loop(
    shop: Shop,
    deployment: Deployment,
    *,
    rate: float,
    duration: float,
    poll: float,
    wait: int | None = WAIT_SECONDS,
) -> LoadResult:
    """Offer ``rate`` orders per second for ``duration`` seconds whatever the answers, then
    wait for the stragglers. CPU is averaged over the offering window, where the load is
    steady; latency counts from when each order was due (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * duration))
    outcomes: list[Outcome] = []

    async def one(number: int, due: float) -> None:
        headers = shop.customers[number % len(shop.customers)]
        outcome = await place_and_wait(shop, headers, poll, started=due, wait=wait)
        outcome.due_s = number / rate
        outcomes.append(outcome)
        _check_working(outcomes)

    sql_before = await scrape(deployment.urls)
    meter = _Meter(deployment)
    meter.start()
    begin_loop, begin_perf = loop.time(), time.perf_counter()
    tasks = []
    for number in range(count):
        offset = number / rate
        delay = begin_loop + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number, begin_perf + offset)))
    await asyncio.sleep(max(0.0, begin_loop + count / rate - loop.time()))
    wall, server, client = meter.stop()
    await asyncio.gather(*tasks)
    return LoadResult(
        outcomes,
        wall,
        server,
        client,
        offered_per_s=rate,
        cores_by_service=meter.by_service,
        sql=await _sql_since(deployment, sql_before),
    )

"""What ordering's price cache saves (issue 12, ADR 0018): ``POST /api/v1/orders`` with the
cache (``CLEAVE_PRICE_CACHE_SECONDS=30``, the default) and without it (``0``: every order asks
the catalog ``GetProducts``, a round trip to the catalog's service in a split topology).

Per topology and setting, on a fresh deployment with SQLite (``bench.deployment``): a warm-up,
then ``--orders`` orders placed one at a time (the latency of the POST, to its 202: the part
of an order the hop is in), then the same number by 8 customers at once (POSTs per second).
The saga settles each order in the background; the deployment's CPU per order counts it too.
Nothing is asserted: compare the two rows of each topology, measured back to back.

    python -m bench.price_cache                                  # split-http and monolith
    python -m bench.price_cache --topologies split-http,split-redis --orders 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from bench.deployment import NotAvailable, TopologyName, start
from bench.load import Shop, seeded
from bench.report import Section, fmt
from bench.timing import percentile

CONCURRENCY = 8
WARM_UP = 20


async def _post(shop: Shop, customer: int) -> float:
    began = time.perf_counter()
    response = await shop.client.post(
        "/api/v1/orders", headers=shop.customers[customer], json=shop.order()
    )
    if response.status_code != 202:
        raise RuntimeError(f"PlaceOrder answered {response.status_code}: {response.text}")
    return time.perf_counter() - began


async def measure(topology: TopologyName, cache_seconds: float, orders: int) -> dict[str, Any]:
    os.environ["CLEAVE_PRICE_CACHE_SECONDS"] = str(cache_seconds)
    async with start(topology, "sqlite") as deployment, seeded(deployment) as shop:
        for number in range(WARM_UP):
            await _post(shop, number % len(shop.customers))
        cpu = deployment.cpu_seconds()
        one_at_a_time = [
            await _post(shop, number % len(shop.customers)) for number in range(orders)
        ]
        queue = list(range(orders))

        async def customer(number: int) -> list[float]:
            taken = []
            while queue:
                queue.pop()
                taken.append(await _post(shop, number))
            return taken

        began = time.perf_counter()
        together = await asyncio.gather(*(customer(number) for number in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
        await asyncio.sleep(2.0)  # the sagas of the last orders settle
        cpu = deployment.cpu_seconds() - cpu
    concurrent = [latency for taken in together for latency in taken]
    return {
        "topology": topology,
        "cache_s": cache_seconds,
        "p50_ms": 1000 * percentile(one_at_a_time, 0.5),
        "p99_ms": 1000 * percentile(one_at_a_time, 0.99),
        "c8_per_s": len(concurrent) / elapsed,
        "c8_p50_ms": 1000 * percentile(concurrent, 0.5),
        "cpu_ms_per_order": 1000 * cpu / (2 * orders),
    }


async def measure_section(quick: bool) -> Section:
    """Item 7 of ``bench.run``: each split topology with the cache and without, back to back
    (quick: split-http only, fewer orders)."""
    topologies: list[TopologyName] = ["split-http"] if quick else ["split-http", "split-redis"]
    orders = 50 if quick else 200
    section = Section(
        title="7. Ordering's price cache (ADR 18)",
        headers=[
            "topology",
            "cache s",
            "POST p50 ms",
            "POST p99 ms",
            "8 clients POST/s",
            "8 clients p50 ms",
            "CPU ms / order",
        ],
    )
    for topology in topologies:
        rows: dict[float, dict[str, Any]] = {}
        for cache_seconds in (30.0, 0.0):
            try:
                rows[cache_seconds] = await measure(topology, cache_seconds, orders)
            except NotAvailable as error:
                section.notes.append(f"{topology}: not measured ({error})")
                break
            row = rows[cache_seconds]
            section.rows.append(
                [
                    topology,
                    f"{cache_seconds:g}",
                    fmt(row["p50_ms"], 1),
                    fmt(row["p99_ms"], 1),
                    fmt(row["c8_per_s"], 0),
                    fmt(row["c8_p50_ms"], 1),
                    fmt(row["cpu_ms_per_order"], 1),
                ]
            )
        if len(rows) == 2:
            key = f"prices_{topology.replace('-', '_')}"
            cached, uncached = rows[30.0], rows[0.0]
            section.metrics[f"{key}_post_p50_ms_cached"] = round(cached["p50_ms"], 2)
            section.metrics[f"{key}_post_p50_ms_uncached"] = round(uncached["p50_ms"], 2)
            section.metrics[f"{key}_c8_per_s_ratio"] = round(
                cached["c8_per_s"] / uncached["c8_per_s"], 2
            )
            section.notes.append(
                f"{topology}: with the cache, PlaceOrder's POST p50 is "
                f"{cached['p50_ms'] / uncached['p50_ms']:.2f}x the one without, and 8 clients "
                f"place {cached['c8_per_s'] / uncached['c8_per_s']:.2f}x as many orders a second."
            )
    os.environ.pop("CLEAVE_PRICE_CACHE_SECONDS", None)
    section.notes.append(
        f"{orders} orders one at a time (the POST, to its 202), then {orders} by "
        f"{CONCURRENCY} customers at once, on a fresh deployment on SQLite per row; CPU counts "
        "every process, the sagas included. Cache 0: every order asks the catalog's service."
    )
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topologies", default="split-http,monolith")
    parser.add_argument("--orders", type=int, default=200)
    arguments = parser.parse_args(argv)
    rows = []
    for topology in arguments.topologies.split(","):
        for cache_seconds in (30.0, 0.0):
            try:
                rows.append(asyncio.run(measure(topology, cache_seconds, arguments.orders)))
            except NotAvailable as error:
                print(f"{topology}: not measured ({error})")
                break
            print(rows[-1], flush=True)
    print()
    print(
        "| topology | cache s | POST p50 ms | POST p99 ms | 8 clients POST/s | p50 ms "
        "| CPU ms/order |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['topology']} | {row['cache_s']:g} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['c8_per_s']:.0f} | {row['c8_p50_ms']:.1f} | "
            f"{row['cpu_ms_per_order']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The monolith alone through its REST API, for before/after comparisons of one change.

``python -m bench.saga_monolith [sqlite|postgresql] [repeats]``: per repeat, a fresh monolith
(``bench.deployment.start``, as ``bench.run`` starts it), 16 customers in a closed loop (300
orders, at most 15 s), then a fixed 20 orders/s for 6 s, clients waiting with ``?wait=30``.
Prints one line per loop: orders/s, CPU ms per order, p50/p99, SQL statements and
transactions per order. Run it twice back to back, once with the code to compare on
``PYTHONPATH`` (the servers import it first), so that both see the same machine load.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bench.deployment import DatabaseKind, Deployment, start
from bench.load import LoadResult, closed_loop, open_loop, seeded
from bench.timing import load_average

CUSTOMERS = 16
ORDERS = 300
TIME_LIMIT = 15.0
RATE = 20.0
DURATION = 6.0
POLL = 0.005


def signal_servers(deployment: Deployment, signal_number: int) -> None:
    """With ``CLEAVE_BENCH_SIGNAL_SERVERS=1``, send ``signal_number`` to every server process:
    SIGUSR1 as the measured loops begin, SIGUSR2 as they end (for a profiler the servers load
    through a ``sitecustomize`` on ``PYTHONPATH``; without one, the signals would kill them)."""
    if os.environ.get("CLEAVE_BENCH_SIGNAL_SERVERS", "") in ("", "0"):
        return
    for process in deployment.processes.values():
        process.send_signal(signal_number)


def line(label: str, result: LoadResult, database: DatabaseKind) -> str:
    """One loop's figures."""
    trips = ""
    if database == "postgresql":
        trips = f" / {result.round_trips_per_order:4.1f} round trips"
    return (
        f"{label:<7} {result.per_second:6.1f} orders/s  {result.cpu_ms_per_order:5.1f} ms CPU/order"
        f"  p50 {result.latency_ms(0.5):6.1f} ms  p99 {result.latency_ms(0.99):6.1f} ms"
        f"  {result.statements_per_order:5.1f} statements / {result.transactions_per_order:4.1f}"
        f" transactions{trips} per order  ({result.completed} settled, {result.failed} failed)"
    )


async def once(database: DatabaseKind) -> None:
    async with (
        start("monolith", database) as deployment,
        seeded(deployment, products=20, customers=CUSTOMERS) as shop,
    ):
        await closed_loop(shop, deployment, orders=30, concurrency=4, time_limit=15, poll=POLL)
        signal_servers(deployment, signal.SIGUSR1)
        closed = await closed_loop(
            shop,
            deployment,
            orders=ORDERS,
            concurrency=CUSTOMERS,
            time_limit=TIME_LIMIT,
            poll=POLL,
        )
        fixed = await open_loop(shop, deployment, rate=RATE, duration=DURATION, poll=POLL)
        signal_servers(deployment, signal.SIGUSR2)
    print(f"load average {load_average()}", flush=True)
    print(line("closed", closed, database), flush=True)
    print(line(f"{RATE:g}/s", fixed, database), flush=True)


def main(argv: list[str]) -> int:
    database: DatabaseKind = "postgresql" if argv and argv[0] == "postgresql" else "sqlite"
    repeats = int(argv[1]) if len(argv) > 1 else 1
    for _ in range(repeats):
        asyncio.run(once(database))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

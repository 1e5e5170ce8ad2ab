"""Profile the hot paths with pyinstrument.

- ``python -m bench.profile bus [count]``: a tight loop of ``bus.send`` of the trivial
  command (item 1's path).
- ``python -m bench.profile saga [orders [customers]]``: the whole shop in this process
  (SQLite, in-process bus, the sandbox payment provider), orders placed through the bus by
  concurrent customers (default one) and awaited with ``GetOrder(wait_seconds=30)`` as the
  HTTP load generator's clients wait (``CLEAVE_PROFILE_POLL=1``: polled as its polling clients
  poll): where the time of an order goes, without HTTP in the way. With
  ``CLEAVE_BENCH_COUNT_SQL=1`` it also prints the SQL statements and transactions per order;
  ``CLEAVE_PROFILE_OFF=1`` measures CPU per order with the profiler off;
  ``CLEAVE_PROFILE_DATABASE=postgresql`` runs it on the bench's PostgreSQL
  (``CLEAVE_BENCH_POSTGRES_URL``), in a schema of its own dropped afterwards.

Prints the profile and writes an HTML version to ``bench/out/profile-<target>.html``.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from bench.deployment import POSTGRES_URL, drop_schema
from bench.load import next_poll
from bench.statements import statement_report
from bench.timing import percentile

OUT = Path(__file__).with_name("out")


async def profile_bus(count: int) -> Profiler:
    from bench.bus import trivial_bus
    from bench.trivial.contracts import Ping

    async with trivial_bus() as bus:
        command = Ping(n=1)
        for _ in range(10_000):
            await bus.send(command)
        profiler = Profiler(interval=0.0002, async_mode="disabled")
        profiler.start()
        for _ in range(count):
            await bus.send(command)
        profiler.stop()
    return profiler


async def profile_saga(
    count: int,
    concurrency: int = 1,
    *,
    poll: bool = False,
    profiled: bool = True,
    postgresql: bool = False,
) -> Profiler:
    from adapters.payments.http_provider import HttpPaymentProvider
    from adapters.payments.sandbox import SandboxPaymentProvider
    from adapters.sqlalchemy.database import Database
    from adapters.sqlalchemy.statement_counts import COUNTS, counting_enabled
    from entrypoints.bootstrap import bootstrap, create_tables
    from entrypoints.settings import Settings
    from kernel.messages import SYSTEM, Principal
    from modules.catalog.contracts import AddProduct
    from modules.identity.contracts import RegisterUser
    from modules.inventory.contracts import Restock
    from modules.ordering.contracts import GetOrder, OrderLineRequest, PlaceOrder

    # Its customers order far faster than a person.
    settings = Settings(password_hash_cost="low", max_open_orders=10**6, orders_per_minute=10**6)
    with tempfile.TemporaryDirectory(prefix="cleave-profile-") as directory:
        schema = None
        if postgresql:
            schema = f"profile{secrets.token_hex(4)}"
            database = Database(POSTGRES_URL, schema=schema)
        else:
            database = Database(f"sqlite+aiosqlite:///{directory}/shop.db")
        await create_tables(database)
        sandbox = SandboxPaymentProvider()
        sandbox.start()
        provider = HttpPaymentProvider.from_settings(sandbox.url, settings)
        runtime = bootstrap(database=database, payment_provider=provider, settings=settings)
        await runtime.start()
        try:
            bus = runtime.bus
            skus = [f"PROFILE-{n:02d}" for n in range(10)]
            for n, sku in enumerate(skus):
                await bus.send(
                    AddProduct(sku=sku, name=sku, price_cents=100 + n, currency="EUR"),
                    principal=SYSTEM,
                )
                await bus.send(Restock(sku=sku, quantity=1_000_000), principal=SYSTEM)
            customers = []
            for n in range(concurrency):
                user = await bus.send(
                    RegisterUser(
                        email=f"p{n}@example.com", password="profile-password-1", name=f"P{n}"
                    )
                )
                customers.append(Principal(subject=user.id, roles=("customer",)))
            await runtime.settle()
            chooser = random.Random(3)
            placed = 0
            latencies: list[float] = []

            async def customer(principal: Principal) -> None:
                nonlocal placed
                while placed < count:
                    placed += 1
                    lines = [
                        OrderLineRequest(sku=sku, quantity=1)
                        for sku in chooser.sample(skus, chooser.randint(1, 3))
                    ]
                    began = time.perf_counter()
                    order = await bus.send(
                        PlaceOrder(lines=lines, payment_token="tok_ok"), principal=principal
                    )
                    while order.status == "PENDING":  # as the HTTP load generator's clients
                        if poll:
                            await asyncio.sleep(next_poll(time.perf_counter() - began, 0.005))
                        look = GetOrder(order_id=order.id, wait_seconds=0 if poll else 30)
                        order = await bus.ask(look, principal=principal)
                    latencies.append(time.perf_counter() - began)

            # Samples the main thread's stack as it runs: where the CPU goes (not where it waits).
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            COUNTS.clear()
            started, cpu = time.perf_counter(), time.process_time()
            if profiled:
                profiler.start()
            await asyncio.gather(*(customer(principal) for principal in customers))
            # What the last orders left for the relays is part of their cost.
            await runtime.settle()
            if profiled:
                profiler.stop()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(
                f"{count} orders in {wall:.2f} s: {count / wall:.1f} orders/s, "
                f"{cpu / count * 1000:.1f} ms of CPU per order (this process, profiler "
                f"{'on' if profiled else 'off'}), p50 {percentile(latencies, 0.5) * 1000:.0f} ms"
                f", clients {'poll' if poll else 'wait'}"
            )
            if counting_enabled():
                print(statement_report(COUNTS, count))
        finally:
            await runtime.stop(grace=5)
            await provider.close()
            sandbox.stop()
            await database.dispose()
            if schema is not None:
                await drop_schema(schema)
    return profiler


def main(argv: list[str]) -> int:
    target = argv[0] if argv else "bus"
    count = int(argv[1]) if len(argv) > 1 else (300_000 if target == "bus" else 100)
    if target == "bus":
        profiler = asyncio.run(profile_bus(count))
    elif target == "saga":
        customers = int(argv[2]) if len(argv) > 2 else 1
        profiler = asyncio.run(
            profile_saga(
                count,
                customers,
                poll=os.environ.get("CLEAVE_PROFILE_POLL", "") not in ("", "0"),
                profiled=os.environ.get("CLEAVE_PROFILE_OFF", "") in ("", "0"),
                postgresql=os.environ.get("CLEAVE_PROFILE_DATABASE", "") == "postgresql",
            )
        )
    else:
        print(
            "usage: python -m bench.profile bus [count] | saga [orders [customers]]",
            file=sys.stderr,
        )
        return 2
    if profiler.last_session is None:
        return 0  # measured with the profiler off
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    OUT.mkdir(exist_ok=True)
    html = OUT / f"profile-{target}.html"
    html.write_text(profiler.output_html(), encoding="utf-8")
    print(f"wrote {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

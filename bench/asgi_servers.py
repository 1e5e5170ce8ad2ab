"""Which ASGI server serves the shop: uvicorn as we run it, uvicorn unguarded, granian.

``python -m bench.asgi_servers [--quick] [--workloads mix,orders]``, also
``python -m bench.run --only asgi``. On a bare litestar endpoint granian answers far more
requests per second than uvicorn; what matters is the shop, where the app's own work
(routing, the bus, SQLite) is most of each request. So each contender serves the real
monolith (``entrypoints.app:create_app``, SQLite, the in-process bus) in a process of its
own, each on a fresh database seeded through the API (20 products with stock, 16 customers):

- ``uvicorn-guarded``: ``cleave run`` itself, i.e. uvicorn with the guarded httptools
  protocol and the quiet event loop of ``adapters.http.server.uvicorn_options`` (request-head
  deadline, connection limit, one write per response). The baseline: every ratio is against
  it.
- ``uvicorn-httptools``: the same options with uvicorn's own httptools protocol (no guard:
  what the guard costs);
- ``uvicorn-h11``: the same options with uvicorn's h11 protocol (no guard, a parser in
  Python: what ``cleave run`` used before 2026-12-01);
- ``granian``: ``granian --interface asgi --factory`` (one worker, the asyncio loop like the
  others, no access log).

Workloads, each at concurrency 1 and 32 from one aiohttp ``ClientSession`` (keep-alive pool):

- ``mix``: ``GET /api/v1/catalog/products`` (20 products), ``GET /api/v1/inventory/{sku}`` and
  ``GET /health/live`` in turn;
- ``orders``: a customer places an order (``POST /api/v1/orders``)
  and waits for it to settle (``GET /api/v1/orders/{id}?wait=30``); one unit is one order.

Every server is pinned to one core and this process to the other; the payment sandbox runs
as a process of its own, counted in no server. Each cell is split into rounds and the servers
take turns, round after round, so a noisy neighbour slows them all alike. Per cell: units
per second, p50/p99 latency, the server's CPU time per unit (its whole process tree) and the
client's. Nothing passes or fails on time; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.deployment import (
    START_TIMEOUT,
    Deployment,
    _cleave,
    _environment,
    free_port,
    payment_provider,
)
from bench.http_clients import _cpus
from bench.load import ORDER_TIMEOUT, TERMINAL, WAIT_SECONDS, seeded
from bench.report import Section, fmt
from bench.timing import Cell, closed_loop, load_average, machine

CONTENDERS = ("uvicorn-guarded", "uvicorn-httptools", "uvicorn-h11", "granian")
WORKLOADS = ("mix", "orders")
CONCURRENCIES = (1, 32)
POOL = 100
ROOT = Path(__file__).resolve().parents[1]

#: One unit of work (a request, or an order placed and settled): True when it went well.
Unit = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Plan:
    #: Requests per cell of the mix, and orders per cell of the order flow.
    requests: int
    orders: int
    rounds: int
    warmup: int


QUICK = Plan(requests=1_500, orders=60, rounds=3, warmup=200)
FULL = Plan(requests=9_000, orders=300, rounds=3, warmup=600)
#: A contender within this fraction of the baseline's requests/s on the shop does not win.
CLEAR_WIN = 0.15


# -- the servers ----------------------------------------------------------------------------


def command(contender: str, port: int) -> list[str]:
    """How each contender is started: ``cleave run`` for ours, the others as near as can be."""
    if contender == "uvicorn-guarded":
        return [_cleave(), "run", "--host", "127.0.0.1", "--port", str(port)]
    if contender in ("uvicorn-httptools", "uvicorn-h11"):
        protocol = contender.removeprefix("uvicorn-")
        return [sys.executable, "-m", "bench.asgi_servers", "--serve", protocol, str(port)]
    if contender == "granian":
        return [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--loop", "asyncio", "--no-ws", "--log-level", "warning", "--no-access-log"),
            "entrypoints.app:create_app",
        ]
    raise ValueError(contender)


def serve_unguarded(protocol: str, port: int) -> None:
    """``cleave run`` with uvicorn's own ``protocol`` (h11 or httptools) in place of the
    guarded httptools one: what the guard costs, and what the parser does."""
    import uvicorn

    from adapters.http.server import ServerLimits, uvicorn_options
    from entrypoints.cli import configure_logging
    from entrypoints.settings import settings_from_environment

    settings = settings_from_environment()
    configure_logging(settings.log_level)
    options = uvicorn_options(ServerLimits(), settings.shutdown_grace_seconds)
    options["http"] = protocol
    uvicorn.run("entrypoints.app:create_app", **options, host="127.0.0.1", port=port)


@dataclass
class Server:
    contender: str
    url: str
    process: psutil.Process

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (granian's worker)."""
        total = 0.0
        with contextlib.suppress(psutil.Error):
            for each in (self.process, *self.process.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    times = each.cpu_times()
                    total += times.user + times.system
        return total


@contextlib.asynccontextmanager
async def started(
    contender: str, directory: Path, provider: str, cpu: int | None
) -> AsyncIterator[Server]:
    """One contender serving a fresh SQLite shop, pinned to ``cpu``, until the block ends."""
    port = free_port()
    environment = _environment(None) | {
        "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / f'{contender}.db'}",
        "CLEAVE_DATA_DIR": str(directory / f"{contender}-data"),
        "CLEAVE_PAYMENT_PROVIDER_URL": provider,
        "PYTHONPATH": str(ROOT),
    }
    log = directory / f"{contender}.log"

    def pin() -> None:  # in the child, before it execs: its workers inherit the core
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with log.open("wb") as output:
        child = await asyncio.create_subprocess_exec(
            *command(contender, port),
            env=environment,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(url, child, log)
        yield Server(contender, url, psutil.Process(child.pid))
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), timeout=15)
            except TimeoutError:
                child.kill()
                await child.wait()


async def _wait_ready(url: str, child: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.returncode is not None:
                tail = (await asyncio.to_thread(log.read_bytes))[-2000:].decode(errors="replace")
                raise RuntimeError(f"{log.stem} exited with {child.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{url}/health/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{log.stem} was not ready within {START_TIMEOUT:.0f} s (log: {log})")


# -- the workloads --------------------------------------------------------------------------


@dataclass
class Shopper:
    """A seeded shop as the workloads see it: its URL, its SKUs, its customers' headers."""

    url: str
    skus: list[str]
    customers: list[dict[str, str]]
    orders: list[dict[str, Any]]


def mix(session: aiohttp.ClientSession, shop: Shopper) -> Unit:
    paths = [
        path
        for sku in shop.skus
        for path in ("/api/v1/catalog/products", f"/api/v1/inventory/{sku}", "/health/live")
    ]
    turn = 0

    async def request() -> bool:
        nonlocal turn
        path = paths[turn % len(paths)]
        turn += 1
        async with session.get(f"{shop.url}{path}") as response:
            await response.read()
            return response.status == 200

    return request


def orders(session: aiohttp.ClientSession, shop: Shopper) -> Unit:
    turn = 0

    async def order() -> bool:
        nonlocal turn
        headers = shop.customers[turn % len(shop.customers)]
        body = shop.orders[turn % len(shop.orders)]
        turn += 1
        async with session.post(f"{shop.url}/api/v1/orders", json=body, headers=headers) as sent:
            placed = await sent.json()
            if sent.status != 202:
                return False
        status = placed["status"]
        deadline = time.monotonic() + ORDER_TIMEOUT
        while status not in TERMINAL:
            if time.monotonic() > deadline:
                return False
            async with session.get(
                f"{shop.url}/api/v1/orders/{placed['id']}",
                params={"wait": WAIT_SECONDS},
                headers=headers,
            ) as answer:
                if answer.status != 200:
                    return False
                status = (await answer.json())["status"]
        return True

    return order


WORKLOAD_UNITS = {"mix": mix, "orders": orders}


async def drive(unit: Unit, count: int, concurrency: int, latencies: list[float]) -> int:
    """Run ``count`` units from ``concurrency`` tasks; latencies appended; errors counted."""
    failures = (aiohttp.ClientError, TimeoutError, KeyError, ValueError)
    return await closed_loop(unit, count, concurrency, latencies, failures)


async def measure_cells(
    servers: dict[str, tuple[Server, Shopper]], plan: Plan, workloads: Sequence[str]
) -> dict[tuple[str, int, str], Cell]:
    """Every cell, keyed by (workload, concurrency, contender)."""
    cells: dict[tuple[str, int, str], Cell] = {}
    names = list(servers)
    for workload in workloads:
        total = plan.requests if workload == "mix" else plan.orders
        per_round = max(1, total // plan.rounds)
        for concurrency in CONCURRENCIES:
            connector = aiohttp.TCPConnector(limit=POOL)
            timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS + 30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                units: dict[str, Unit] = {}
                for name in names:
                    units[name] = WORKLOAD_UNITS[workload](session, servers[name][1])
                    warmup = plan.warmup if workload == "mix" else plan.warmup // 20
                    await drive(units[name], max(warmup, concurrency), concurrency, [])
                    cells[(workload, concurrency, name)] = Cell()
                for number in range(plan.rounds):
                    # Rotate who goes first, so nobody always follows the same neighbour.
                    shift = number % len(names)
                    for name in names[shift:] + names[:shift]:
                        server, cell = servers[name][0], cells[(workload, concurrency, name)]
                        gc.collect()
                        server_before = server.cpu_seconds()
                        wall, cpu = time.perf_counter(), time.process_time()
                        cell.errors += await drive(
                            units[name], per_round, concurrency, cell.latencies
                        )
                        cell.wall_s += time.perf_counter() - wall
                        cell.cpu_s += time.process_time() - cpu
                        cell.server_cpu_s += server.cpu_seconds() - server_before
                        print(
                            f"    {workload} c{concurrency} {name}: round {number + 1}",
                            file=sys.stderr,
                            flush=True,
                        )
            print(
                f"  measured {workload} at concurrency {concurrency}", file=sys.stderr, flush=True
            )
    return cells


# -- the report -----------------------------------------------------------------------------


def _ratio(value: float, base: float) -> float:
    return value / base if base else float("nan")


def report(
    cells: dict[tuple[str, int, str], Cell],
    plan: Plan,
    workloads: Sequence[str],
    names: Sequence[str],
    pinned: str,
) -> Section:
    baseline = names[0]
    section = Section(
        title="ASGI servers serving the shop (monolith, SQLite)",
        headers=[
            "workload",
            "conc.",
            "server",
            "units/s",
            "p50 ms",
            "p99 ms",
            "server CPU µs/unit",
            "client CPU µs/unit",
            "errors",
            f"units/s vs {baseline}",
            f"server CPU vs {baseline}",
        ],
    )
    verdicts: list[str] = []
    for workload in workloads:
        for concurrency in CONCURRENCIES:
            base = cells[(workload, concurrency, baseline)]
            for name in names:
                cell = cells[(workload, concurrency, name)]
                rate = _ratio(cell.per_second, base.per_second)
                cpu = _ratio(cell.server_cpu_us, base.server_cpu_us)
                section.rows.append(
                    [
                        workload,
                        str(concurrency),
                        name,
                        fmt(cell.per_second, 1),
                        fmt(cell.ms(0.5)),
                        fmt(cell.ms(0.99)),
                        fmt(cell.server_cpu_us, 0),
                        fmt(cell.cpu_us, 0),
                        str(cell.errors),
                        f"{rate:.2f}x",
                        f"{cpu:.2f}x",
                    ]
                )
                prefix = f"asgi_{name.replace('-', '_')}_{workload}_c{concurrency}"
                section.metrics.update(
                    {
                        f"{prefix}_per_s": round(cell.per_second, 1),
                        f"{prefix}_p50_ms": round(cell.ms(0.5), 3),
                        f"{prefix}_p99_ms": round(cell.ms(0.99), 3),
                        f"{prefix}_server_cpu_us": round(cell.server_cpu_us, 1),
                        f"{prefix}_errors": cell.errors,
                    }
                )
                if name != baseline:
                    section.metrics[f"{prefix}_vs_{baseline.replace('-', '_')}"] = round(rate, 3)
                    if rate > 1 + CLEAR_WIN:
                        verdicts.append(f"{name} {rate:.2f}x on {workload} at {concurrency}")
    if verdicts:
        section.notes.append(
            f"More than {CLEAR_WIN:.0%} ahead of {baseline}: " + "; ".join(verdicts) + "."
        )
    else:
        section.notes.append(
            f"No contender is more than {CLEAR_WIN:.0%} ahead of {baseline} on the shop: "
            f"keep {baseline} (its guards are ours and tested)."
        )
    section.notes.append(
        f"{plan.requests:,} requests (mix) and {plan.orders:,} orders per cell in "
        f"{plan.rounds} rounds (servers taking turns) after a warm-up; {pinned}."
    )
    return section


# -- running it -----------------------------------------------------------------------------


async def _shopper(server: Server) -> Shopper:
    deployment = Deployment(
        topology="monolith",
        database="sqlite",
        base_url=server.url,
        processes={"shop": server.process},
    )
    async with seeded(deployment) as shop:
        bodies = [shop.order() for _ in range(64)]
        return Shopper(server.url, shop.skus, shop.customers, bodies)


async def measure(
    *,
    quick: bool,
    workloads: Sequence[str] = WORKLOADS,
    contenders: Sequence[str] = CONTENDERS,
) -> Section:
    """Start every contender, seed each shop, then measure the cells taking turns."""
    plan = QUICK if quick else FULL
    client_cpu, server_cpu = _cpus()
    pinned = (
        f"servers pinned to CPU {server_cpu}, client to CPU {client_cpu}"
        if client_cpu is not None
        else "not pinned (one core)"
    )
    before = os.sched_getaffinity(0) if client_cpu is not None else None
    with tempfile.TemporaryDirectory(prefix="cleave-asgi-") as folder:
        directory = Path(folder)
        async with contextlib.AsyncExitStack() as stack:
            provider = await stack.enter_async_context(payment_provider(directory))
            servers: dict[str, tuple[Server, Shopper]] = {}
            for name in contenders:
                server = await stack.enter_async_context(
                    started(name, directory, provider, server_cpu)
                )
                servers[name] = (server, await _shopper(server))
            if client_cpu is not None:
                os.sched_setaffinity(0, {client_cpu})
            try:
                cells = await measure_cells(servers, plan, workloads)
            finally:
                if before is not None:
                    os.sched_setaffinity(0, before)
    return report(cells, plan, workloads, list(contenders), pinned)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_servers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,500 requests, 60 orders a cell")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, among {','.join(WORKLOADS)} (default: both)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, the first is the baseline (default: {','.join(CONTENDERS)})",
    )
    parser.add_argument("--serve", nargs=2, metavar=("PROTOCOL", "PORT"), help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.serve:
        serve_unguarded(arguments.serve[0], int(arguments.serve[1]))
        return 0
    contenders = tuple(arguments.contenders.split(","))
    workloads = tuple(arguments.workloads.split(","))
    unknown = (set(contenders) - set(CONTENDERS)) | (set(workloads) - set(WORKLOADS))
    if unknown:
        print(f"unknown contenders or workloads: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    about = machine() | {"load": load_average()}
    begun = time.monotonic()
    section = asyncio.run(
        measure(quick=arguments.quick, workloads=workloads, contenders=contenders)
    )
    print(section.text(), flush=True)
    summary = dict(section.metrics)
    summary.update(quick=arguments.quick, seconds=round(time.monotonic() - begun, 1), machine=about)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

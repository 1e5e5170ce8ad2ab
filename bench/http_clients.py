"""Which async HTTP client: aiohttp's ``ClientSession`` or httpx's ``AsyncClient``.

``python -m bench.http_clients [--quick]``. A litestar app (``bench/http_app.py``) runs under
uvicorn in a process of its own (1 worker, log level warning) on 127.0.0.1; this process
drives its two routes with each client:

- ``/bare``: a small constant body, the floor of a request;
- ``/internal/call``: a ~340-byte JSON envelope and message, decoded by msgspec into a struct
  on the server and answered with ``{"result": {...}}``, as a service-to-service call.

Each cell (route x client x concurrency) sends a fixed number of requests (quick: 2,000,
full: 20,000) after a warm-up, from ``concurrency`` asyncio tasks sharing one pooled client
with keep-alive (aiohttp ``TCPConnector(limit=100)``; httpx ``max_connections=100`` and as
many keep-alive connections, so that neither closes connections it will need again). The
count is split into rounds and the clients take turns, round after round, so a noisy
neighbour slows both alike. Per cell: requests per second (wall time), p50 and p99 latency
(from the call to the body read), the client's CPU time per request (``process_time`` of
this process) and the server's (its process, through psutil). When there are two cores or
more, the client and the server are pinned to different ones.

Nothing passes or fails on time; the ratios aiohttp/httpx are what travels between
machines. The last line printed is one JSON object with every figure.
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
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import httpx
import psutil

from bench.deployment import free_port
from bench.http_app import call_body
from bench.report import Section, fmt
from bench.timing import Cell, closed_loop, load_average, machine

CLIENTS = ("aiohttp", "httpx")
ROUTES = ("/bare", "/internal/call")
CONCURRENCIES = (1, 32)
#: Connections each client may open (the same bound for both).
POOL = 100
START_TIMEOUT = 30.0
HEADERS = {"content-type": "application/json"}

#: One request: returns the HTTP status once the whole body is read.
Send = Callable[[], Awaitable[int]]


@dataclass
class Plan:
    requests: int
    rounds: int
    warmup: int


QUICK = Plan(requests=2_000, rounds=2, warmup=200)
FULL = Plan(requests=20_000, rounds=4, warmup=1_000)


# -- the server -----------------------------------------------------------------------------


def _cpus() -> tuple[int | None, int | None]:
    """(client CPU, server CPU): two different cores when there are two, else no pinning."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[-1], cores[-2]


@contextlib.contextmanager
def server(cpu: int | None) -> Iterator[tuple[str, psutil.Process]]:
    """``bench.http_app`` under uvicorn in a process of its own; yields its URL and process."""
    port = free_port()
    command = [
        sys.executable,
        *("-m", "uvicorn", "bench.http_app:app"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1", "--log-level", "warning", "--no-access-log"),
    ]
    process = subprocess.Popen(command, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        if cpu is not None:
            os.sched_setaffinity(process.pid, {cpu})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(f"{url}/bare", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark server did not answer within {START_TIMEOUT}s")
            time.sleep(0.1)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# -- the clients ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def aiohttp_sender(url: str, route: str, body: bytes) -> Any:
    connector = aiohttp.TCPConnector(limit=POOL)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        target = f"{url}{route}"

        async def send() -> int:
            async with session.post(target, data=body, headers=HEADERS) as response:
                await response.read()
                return response.status

        yield send


@contextlib.asynccontextmanager
async def httpx_sender(url: str, route: str, body: bytes) -> Any:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        target = f"{url}{route}"

        async def send() -> int:
            response = await client.post(target, content=body, headers=HEADERS)
            return response.status_code

        yield send


SENDERS = {"aiohttp": aiohttp_sender, "httpx": httpx_sender}


async def drive(send: Send, count: int, concurrency: int, latencies: list[float]) -> int:
    """Send ``count`` requests from ``concurrency`` tasks; latencies appended; errors counted."""

    async def answered_ok() -> bool:
        return await send() == 200

    failures = (aiohttp.ClientError, httpx.HTTPError, TimeoutError)
    return await closed_loop(answered_ok, count, concurrency, latencies, failures)


async def measure_cells(
    url: str, server_process: psutil.Process, plan: Plan
) -> dict[tuple[str, int, str], Cell]:
    """Every cell, keyed by (route, concurrency, client)."""
    bodies = {"/bare": b'{"ping":1}', "/internal/call": call_body()}
    cells: dict[tuple[str, int, str], Cell] = {}
    per_round = plan.requests // plan.rounds
    for route in ROUTES:
        for concurrency in CONCURRENCIES:
            async with contextlib.AsyncExitStack() as stack:
                senders: dict[str, Send] = {}
                for client in CLIENTS:
                    senders[client] = await stack.enter_async_context(
                        SENDERS[client](url, route, bodies[route])
                    )
                    # Warm-up: open the connections, fill caches and lazy state.
                    await drive(senders[client], plan.warmup, concurrency, [])
                    cells[(route, concurrency, client)] = Cell()
                for number in range(plan.rounds):
                    # Alternate who goes first, so neither always follows the other.
                    order = CLIENTS if number % 2 == 0 else CLIENTS[::-1]
                    for client in order:
                        cell = cells[(route, concurrency, client)]
                        gc.collect()
                        server_before = _cpu_seconds(server_process)
                        wall, cpu = time.perf_counter(), time.process_time()
                        cell.errors += await drive(
                            senders[client], per_round, concurrency, cell.latencies
                        )
                        cell.wall_s += time.perf_counter() - wall
                        cell.cpu_s += time.process_time() - cpu
                        cell.server_cpu_s += _cpu_seconds(server_process) - server_before
            print(f"  measured {route} at concurrency {concurrency}", file=sys.stderr, flush=True)
    return cells


# -- the report -----------------------------------------------------------------------------


def _key(route: str) -> str:
    return "bare" if route == "/bare" else "call"


def report(cells: dict[tuple[str, int, str], Cell], plan: Plan, pinned: str) -> Section:
    section = Section(
        title="HTTP clients: aiohttp ClientSession vs httpx AsyncClient",
        headers=[
            "route",
            "conc.",
            "client",
            "req/s",
            "p50 ms",
            "p99 ms",
            "client CPU µs/req",
            "server CPU µs/req",
            "errors",
        ],
    )
    ratios = []
    for route in ROUTES:
        for concurrency in CONCURRENCIES:
            for client in CLIENTS:
                cell = cells[(route, concurrency, client)]
                section.rows.append(
                    [
                        route,
                        str(concurrency),
                        client,
                        fmt(cell.per_second, 0),
                        fmt(cell.ms(0.5)),
                        fmt(cell.ms(0.99)),
                        fmt(cell.cpu_us, 0),
                        fmt(cell.server_cpu_us, 0),
                        str(cell.errors),
                    ]
                )
                prefix = f"http_{client}_{_key(route)}_c{concurrency}"
                section.metrics.update(
                    {
                        f"{prefix}_per_s": round(cell.per_second, 1),
                        f"{prefix}_p50_ms": round(cell.ms(0.5), 3),
                        f"{prefix}_p99_ms": round(cell.ms(0.99), 3),
                        f"{prefix}_cpu_us": round(cell.cpu_us, 1),
                        f"{prefix}_server_cpu_us": round(cell.server_cpu_us, 1),
                        f"{prefix}_errors": cell.errors,
                    }
                )
            fast, slow = (
                cells[(route, concurrency, "aiohttp")],
                cells[(route, concurrency, "httpx")],
            )
            rate = fast.per_second / slow.per_second if slow.per_second else float("nan")
            cpu = fast.cpu_us / slow.cpu_us if slow.cpu_us else float("nan")
            key = f"http_{_key(route)}_c{concurrency}"
            section.metrics[f"{key}_per_s_ratio"] = round(rate, 2)
            section.metrics[f"{key}_cpu_ratio"] = round(cpu, 2)
            ratios.append(
                f"{route} at concurrency {concurrency}: aiohttp/httpx requests/s {rate:.2f}x, "
                f"client CPU per request {cpu:.2f}x"
            )
    section.notes.extend(ratios)
    section.notes.append(
        f"{plan.requests:,} requests per cell in {plan.rounds} rounds (clients taking turns) "
        f"after {plan.warmup:,} warm-up requests; {pinned}."
    )
    section.notes.append(
        "When the server's CPU per request times the requests/s nears one core, the server "
        "is the bottleneck and requests/s understates the difference: compare client CPU."
    )
    return section


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 requests per cell")
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per cell (default: 20,000; 2,000 with --quick)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    plan = QUICK if arguments.quick else FULL
    if arguments.requests is not None:
        per_round = max(1, arguments.requests // plan.rounds)
        plan = replace(plan, requests=per_round * plan.rounds)
    about = machine() | {"load": load_average()}
    started = time.monotonic()
    client_cpu, server_cpu = _cpus()
    pinned = (
        f"client pinned to CPU {client_cpu}, server to CPU {server_cpu}"
        if client_cpu is not None
        else "not pinned (one core)"
    )
    print(f"{pinned}; load average {about['load']}\n", flush=True)
    with server(server_cpu) as (url, server_process):
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        try:
            cells = asyncio.run(measure_cells(url, server_process, plan))
        finally:
            if client_cpu is not None:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    section = report(cells, plan, pinned)
    print(section.text(), flush=True)
    summary = dict(section.metrics)
    elapsed = time.monotonic() - started
    summary.update(
        quick=arguments.quick,
        requests_per_cell=plan.requests,
        seconds=round(elapsed, 1),
        machine=about,
    )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Items 3 and 4: the transports between services.

**Item 3, HTTP.** The trivial module (``bench/trivial``: a ``Ping`` command and a ``Peek``
query whose handlers return a constant) runs in a service process of its own
(``python -m bench.http_service trivial``: the app ``cleave serve`` runs for a module, under
uvicorn). This process calls it the way one service calls another: ``bus.send(Ping())`` and
``bus.ask(Peek())`` on a ``MessageBus`` bootstrapped with no module of its own and the
trivial module remote (``entrypoints.bootstrap.Remote``), reached through
``adapters.bus.http.client.HttpTransport`` and ``HttpClient`` (aiohttp, pooled keep-alive
connections, a circuit breaker per instance) with every request signed by a ``Signer``;
frames in MessagePack (the default ``wire_format``) and in JSON.

The floor is the same kind of client on the same stack with nothing of Cleave: aiohttp's
``ClientSession`` posting to a bare litestar endpoint (``bench/http_app.py``'s ``/bare``,
a constant body) served by uvicorn in a process of its own started the same way
(``python -m bench.http_service floor``). The issue's target: within 1.3x of the floor.

Both servers are pinned to one core and this process (the client) to another when there
are two; each cell (contender x concurrency) sends a fixed number of calls from 1 or 32
tasks, after a warm-up, in rounds in which the contenders take turns, so that a noisy
neighbour slows them all alike. Per cell: calls per second, p50/p99 latency, the client's
and the server's CPU time per call, and the ratios to the floor at the same concurrency.
Nothing passes or fails on time.

**Item 4, Redis**: not measured here (``bench/redis_transport.py`` runs on its own).
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.deployment import free_port
from bench.report import Section, fmt, not_measured
from bench.timing import Cell, closed_loop

ROOT = Path(__file__).resolve().parents[1]
#: The issue's target, printed next to the ratios (never asserted).
TARGET_VS_FLOOR = 1.3
CONCURRENCIES = (1, 32)
START_TIMEOUT = 60.0
#: The contenders served by the internal endpoints alone (no service-app stack around them).
INTERNAL_ONLY = "(internal endpoints only)"
#: One call: returns once its answer is read (raises when it failed).
Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Plan:
    calls: int
    rounds: int
    warmup: int
    formats: tuple[str, ...]


QUICK = Plan(calls=400, rounds=2, warmup=60, formats=("msgpack", "json"))
FULL = Plan(calls=6_000, rounds=4, warmup=500, formats=("msgpack", "json"))


# -- the servers ------------------------------------------------------------------------------


def _cpus() -> tuple[int | None, int | None]:
    """(client CPU, server CPU): the client keeps the core ``bench.run`` pinned it to (the
    highest), the servers get the next one; no pinning on one core."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(range(os.cpu_count() or 1))
    if len(cores) < 2:
        return None, None
    return cores[-1], cores[-2]


def _answers(url: str, method: str, any_status: bool = False) -> bool:
    """Whether ``url`` answers 200 (or anything at all, with ``any_status``)."""
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return any_status
    except (urllib.error.URLError, OSError, ValueError):
        return False


#: How to tell each server is up: (path, method, whether any HTTP answer will do).
PROBES = {
    "floor": ("/bare", "POST", False),
    "trivial": ("/health/ready", "GET", False),
    # The internal endpoints alone: a 404 means the app is serving (after its start-up).
    "internal": ("/health/ready", "GET", True),
}


@contextlib.contextmanager
def _server(
    which: str, environment: dict[str, str], cpu: int | None
) -> Iterator[tuple[str, psutil.Process]]:
    """``python -m bench.http_service which`` in a process of its own; its URL and process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.http_service", which, "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    try:
        if cpu is not None:
            os.sched_setaffinity(process.pid, {cpu})
        url = f"http://127.0.0.1:{port}"
        path, method, any_status = PROBES[which]
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url + path, method, any_status):
            if process.poll() is not None:
                raise RuntimeError(f"the {which} server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {which} server did not answer within {START_TIMEOUT}s")
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


# -- the callers ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _floor_caller(url: str) -> AsyncIterator[Call]:
    """aiohttp's pooled client posting to the bare endpoint (as ``bench.http_clients``)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        target, body = f"{url}/bare", b'{"ping":1}'
        headers = {"content-type": "application/json"}

        async def call() -> None:
            async with session.post(target, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/bare answered {response.status}")

        yield call


@contextlib.asynccontextmanager
async def _cleave_callers(url: str, key: str, wire_format: str) -> AsyncIterator[dict[str, Call]]:
    """A bus with the trivial module remote over HTTP in ``wire_format``: send and ask."""
    from adapters.bus.http.client import HttpClient, HttpTransport
    from adapters.bus.http.signing import Signer
    from bench.trivial import contracts
    from bench.trivial.contracts import Peek, Ping
    from entrypoints.bootstrap import Remote, bootstrap
    from entrypoints.settings import Settings
    from kernel.codec import Codec
    from kernel.module import declared_messages

    settings = Settings(service_key=key, wire_format=wire_format)  # type: ignore[arg-type]
    client = HttpClient(
        Signer(settings.service_key, "bench-caller"),
        timeout=settings.remote_timeout_seconds,
        breaker_threshold=settings.remote_breaker_threshold,
        breaker_cooldown=settings.remote_breaker_cooldown_seconds,
    )
    codec = Codec(declared_messages(contracts), settings.wire_format)
    transport = HttpTransport(client, codec, [url], module="bench")
    runtime = bootstrap(
        database={},
        settings=settings,
        modules=[],
        remote={"bench": Remote(contracts, transport)},
    )
    await runtime.start()
    bus = runtime.bus
    ping, peek = Ping(), Peek()

    async def send() -> None:
        await bus.send(ping)

    async def ask() -> None:
        await bus.ask(peek)

    try:
        yield {"send": send, "ask": ask}
    finally:
        await runtime.stop(grace=1)
        await client.close()


#: What failed calls raised, by type and message (printed under item 3 when any did).
FAILURES: Counter[str] = Counter()


async def _drive(call: Call, count: int, concurrency: int, latencies: list[float]) -> int:
    """``count`` calls from ``concurrency`` tasks; latencies appended; errors counted."""

    async def answered() -> bool:
        await call()
        return True

    def record(error: BaseException) -> None:
        FAILURES[f"{type(error).__name__}: {str(error)[:160]}"] += 1

    return await closed_loop(answered, count, concurrency, latencies, on_failure=record)


async def _measure_cells(
    servers: dict[str, tuple[str, psutil.Process]], key: str, plan: Plan
) -> tuple[list[str], dict[tuple[str, int], Cell]]:
    """Every cell, keyed by (contender, concurrency); the contenders in order."""
    floor_url, floor_process = servers["floor"]
    trivial_url, trivial_process = servers["trivial"]
    internal_url, internal_process = servers["internal"]
    cells: dict[tuple[str, int], Cell] = {}
    async with contextlib.AsyncExitStack() as stack:
        calls: dict[str, tuple[Call, psutil.Process]] = {
            "floor": (await stack.enter_async_context(_floor_caller(floor_url)), floor_process)
        }
        for wire_format in plan.formats:
            found = await stack.enter_async_context(_cleave_callers(trivial_url, key, wire_format))
            for verb, call in found.items():
                calls[f"{verb} {wire_format}"] = (call, trivial_process)
        found = await stack.enter_async_context(_cleave_callers(internal_url, key, "msgpack"))
        for verb, call in found.items():
            calls[f"{verb} msgpack {INTERNAL_ONLY}"] = (call, internal_process)
        names = list(calls)
        per_round = plan.calls // plan.rounds
        for concurrency in CONCURRENCIES:
            for name, (call, _) in calls.items():
                # Warm-up: open the connections, fill caches and lazy state.
                errors = await _drive(call, plan.warmup, concurrency, [])
                if errors == plan.warmup:
                    raise RuntimeError(f"{name}: every warm-up call failed")
                cells[(name, concurrency)] = Cell()
            for number in range(plan.rounds):
                order = names if number % 2 == 0 else names[::-1]
                for name in order:
                    call, server = calls[name]
                    cell = cells[(name, concurrency)]
                    gc.collect()
                    server_before = _cpu_seconds(server)
                    wall, cpu = time.perf_counter(), time.process_time()
                    cell.errors += await _drive(call, per_round, concurrency, cell.latencies)
                    cell.wall_s += time.perf_counter() - wall
                    cell.cpu_s += time.process_time() - cpu
                    cell.server_cpu_s += _cpu_seconds(server) - server_before
            print(f"  measured item 3 at concurrency {concurrency}", file=sys.stderr, flush=True)
    return names, cells


# -- item 3 -----------------------------------------------------------------------------------


def _server_environment(key: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        CLEAVE_SERVICE_KEY=key,
        CLEAVE_JWT_SECRET=secrets.token_hex(32),
        CLEAVE_LOG_LEVEL=os.environ.get("CLEAVE_BENCH_LOG_LEVEL", "WARNING"),
        CLEAVE_SHUTDOWN_GRACE_SECONDS="2",
        PYTHONUNBUFFERED="1",
    )
    return environment


async def measure_http(*, quick: bool) -> Section:
    """Item 3: a trivial command and query to a module in another process over HTTP,
    against aiohttp on a bare litestar endpoint."""
    plan = QUICK if quick else FULL
    key = secrets.token_hex(32)
    environment = _server_environment(key)
    client_cpu, server_cpu = _cpus()
    previous = os.sched_getaffinity(0) if client_cpu is not None else None
    try:
        with contextlib.ExitStack() as stack:
            servers = {
                which: stack.enter_context(_server(which, environment, server_cpu))
                for which in PROBES
            }
            if client_cpu is not None:
                os.sched_setaffinity(0, {client_cpu})
            names, cells = await _measure_cells(servers, key, plan)
    except (RuntimeError, OSError) as error:
        section = not_measured("3. HTTP transport", str(error), ["http_send_us", "http_msgs_per_s"])
        section.notes[0] = f"not measured: {error}"
        return section
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    pinned = (
        f"client pinned to CPU {client_cpu}, both servers to CPU {server_cpu}"
        if client_cpu is not None
        else "not pinned (one core)"
    )
    return _report(names, cells, plan, pinned)


def _ratio(value: float, floor: float) -> float:
    return value / floor if floor else float("nan")


def _report(
    names: list[str], cells: dict[tuple[str, int], Cell], plan: Plan, pinned: str
) -> Section:
    section = Section(
        title="3. HTTP transport: a trivial command and query to a module in another process",
        headers=[
            "contender",
            "conc.",
            "calls / s",
            "p50 ms",
            "p99 ms",
            "floor / this (calls/s)",
            "p50 vs floor",
            "p99 vs floor",
            "client CPU µs",
            "server CPU µs",
            "CPU vs floor",
            "errors",
        ],
    )
    metrics: dict[str, Any] = {}
    worst: dict[int, float] = {}
    for concurrency in CONCURRENCIES:
        floor = cells[("floor", concurrency)]
        floor_cpu = floor.cpu_us + floor.server_cpu_us
        for name in names:
            cell = cells[(name, concurrency)]
            is_floor = name == "floor"
            slower = _ratio(floor.per_second, cell.per_second)
            p50, p99 = _ratio(cell.ms(0.5), floor.ms(0.5)), _ratio(cell.ms(0.99), floor.ms(0.99))
            cpu = _ratio(cell.cpu_us + cell.server_cpu_us, floor_cpu)
            section.rows.append(
                [
                    "floor: aiohttp → litestar /bare" if is_floor else f"cleave {name}",
                    str(concurrency),
                    fmt(cell.per_second, 0),
                    fmt(cell.ms(0.5)),
                    fmt(cell.ms(0.99)),
                    "1.00x" if is_floor else f"{slower:.2f}x",
                    "1.00x" if is_floor else f"{p50:.2f}x",
                    "1.00x" if is_floor else f"{p99:.2f}x",
                    fmt(cell.cpu_us, 0),
                    fmt(cell.server_cpu_us, 0),
                    "1.00x" if is_floor else f"{cpu:.2f}x",
                    str(cell.errors),
                ]
            )
            slug = name.replace(INTERNAL_ONLY, "internal_only").strip().replace(" ", "_")
            prefix = f"http_{slug}_c{concurrency}"
            metrics.update(
                {
                    f"{prefix}_per_s": round(cell.per_second, 1),
                    f"{prefix}_p50_ms": round(cell.ms(0.5), 3),
                    f"{prefix}_p99_ms": round(cell.ms(0.99), 3),
                    f"{prefix}_client_cpu_us": round(cell.cpu_us, 1),
                    f"{prefix}_server_cpu_us": round(cell.server_cpu_us, 1),
                }
            )
            if not is_floor:
                metrics.update(
                    {
                        f"{prefix}_vs_floor_per_s": round(slower, 2),
                        f"{prefix}_vs_floor_p50": round(p50, 2),
                        f"{prefix}_vs_floor_p99": round(p99, 2),
                        f"{prefix}_vs_floor_cpu": round(cpu, 2),
                        f"{prefix}_errors": cell.errors,
                    }
                )
                if name in ("send msgpack", "ask msgpack"):
                    worst[concurrency] = max(worst.get(concurrency, 0.0), slower)
    sequential = cells.get(("send msgpack", 1))
    # The first version of this report's keys: µs per sequential send, and calls per second
    # under concurrency (the slower of send and ask), in the default wire format.
    metrics["http_send_us"] = (
        round(1e6 / sequential.per_second, 1) if sequential and sequential.per_second else None
    )
    metrics["http_msgs_per_s"] = round(
        min(cells[(verb, 32)].per_second for verb in ("send msgpack", "ask msgpack")), 1
    )
    for concurrency, slower in sorted(worst.items()):
        metrics[f"http_vs_floor_c{concurrency}"] = round(slower, 2)
        section.notes.append(
            f"concurrency {concurrency}: the HTTP transport (MessagePack, the default) makes "
            f"{1 / slower:.2f}x the floor's calls per second at worst, i.e. the floor is "
            f"{slower:.2f}x faster (target: within {TARGET_VS_FLOOR}x)."
        )
    section.metrics = metrics
    section.notes += [
        "cleave send / ask: `await bus.send(Ping())` / `await bus.ask(Peek())` from a bus whose "
        "only module is remote, through HttpTransport (aiohttp, keep-alive pool, circuit "
        "breaker, HMAC-signed requests) to the trivial module served by the app `cleave serve` "
        "runs (process_app: middleware, signature check, Receiver, unit of work); frames in "
        "MessagePack or JSON. floor: aiohttp posting to a litestar endpoint that answers a "
        "constant, served the same way. (internal endpoints only): the same runtime behind "
        "adapters.bus.http.server.internal_app alone, without the service app's middleware, "
        "guard, rate limit and body check: the transport's own cost.",
        "floor / this: how many times more calls per second the floor makes; p50, p99 and CPU "
        "(client + server, per call) vs floor: this one's divided by the floor's, at the same "
        "concurrency.",
        f"{plan.calls:,} calls per cell in {plan.rounds} rounds (contenders taking turns) after "
        f"{plan.warmup:,} warm-up calls; {pinned}.",
        "When the server CPU per call times the calls per second nears one core, the server is "
        "the bottleneck (concurrency 32): compare CPU per call.",
    ]
    section.notes += [f"failed calls: {count} x {what}" for what, count in FAILURES.most_common(5)]
    return section


def measure_redis(*, quick: bool) -> Section:
    """Item 4: events and queries over the Redis transport against plain dramatiq and a raw
    LPUSH + BRPOP round trip (bench/redis_transport.py)."""
    from bench.redis_transport import measure

    return measure(quick=quick)

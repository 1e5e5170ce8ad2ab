"""Item 1: the in-process bus against a direct handler call and against lato, on one core.

The bus is bootstrapped the way the shop is (registry, punq container, dispatcher, in-process
transport) with one trivial module whose handlers return a constant, so what is timed is the
bus: routing, the envelope, the unit of work, the context variable and the bound handler.
The same message object is sent again and again by every contender, so message
construction is timed by none of them (lato's pydantic messages would cost more to build).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import lato

from adapters.sqlalchemy.database import Database
from bench.report import Section, fmt
from bench.timing import AsyncLoop, Stamp, Timing, busy_note, compare_async, since, stamp
from bench.trivial import handlers
from bench.trivial.contracts import Peek, Ping
from bench.trivial.module import module as trivial_module
from entrypoints.bootstrap import TransportName, bootstrap
from kernel.bus import MessageBus

#: The issue's targets, printed next to the numbers (never asserted).
TARGET_OVERHEAD_US = 3.0
TARGET_MSGS_PER_S = 250_000
TARGET_VS_LATO = 5.0


@contextlib.asynccontextmanager
async def trivial_bus(transport: TransportName = "inprocess") -> AsyncIterator[MessageBus]:
    """A started runtime hosting only the trivial module; yields its bus."""
    with tempfile.TemporaryDirectory(prefix="cleave-bench-") as directory:
        # The trivial module has no tables: the database is never opened.
        database = Database(f"sqlite+aiosqlite:///{Path(directory) / 'unused.db'}")
        runtime = bootstrap(database=database, transport=transport, modules=[trivial_module])
        await runtime.start()
        try:
            yield runtime.bus
        finally:
            await runtime.stop(grace=1)
            await database.dispose()


class LatoPing(lato.Command):
    """lato's trivial command (a pydantic model, as lato requires)."""

    n: int = 0


class LatoPeek(lato.Query):
    """lato's trivial query."""

    n: int = 0


def lato_application() -> lato.Application:
    """The idiomatic lato equivalent: an application with one module and two handlers."""
    module = lato.ApplicationModule("bench")

    @module.handler(LatoPing)
    async def ping(command: LatoPing) -> int:
        return 1

    @module.handler(LatoPeek)
    async def peek(query: LatoPeek) -> int:
        return 1

    app = lato.Application("bench")
    app.include_submodule(module)
    return app


def _loop(call: Any, message: Any) -> AsyncLoop:
    """A tight loop of ``await call(message)``."""

    async def run(n: int) -> Stamp:
        start = stamp()
        for _ in range(n):
            await call(message)
        return since(start)

    return run


async def measure(*, quick: bool) -> Section:
    """Send and ask through the bus, the direct call and lato; one table, several ratios."""
    budget = 0.05 if quick else 0.25  # seconds per repetition per contender
    repetitions = 5 if quick else 11
    app = lato_application()
    async with trivial_bus("inprocess") as bus, trivial_bus("loopback") as loopback:
        command, query = Ping(n=1), Peek(n=1)
        contenders = {
            "direct send": _loop(handlers.ping, command),
            "bus send": _loop(bus.send, command),
            "lato send": _loop(app.execute_async, LatoPing(n=1)),
            "direct ask": _loop(handlers.peek, query),
            "bus ask": _loop(bus.ask, query),
            "lato ask": _loop(app.execute_async, LatoPeek(n=1)),
            "loopback send": _loop(loopback.send, command),
        }
        timings = await compare_async(contenders, budget=budget, repetitions=repetitions)
    return _section(timings, repetitions)


def _section(t: dict[str, Timing], repetitions: int) -> Section:
    send_overhead = t["bus send"].us - t["direct send"].us
    ask_overhead = t["bus ask"].us - t["direct ask"].us
    section = Section(
        title="1. In-process bus (one core)",
        headers=["contender", "µs / message", "messages / s", "overhead µs", "spread µs", "CPU µs"],
    )
    for name, timing in t.items():
        direct = t["direct ask" if "ask" in name else "direct send"]
        section.rows.append(
            [
                name,
                f"{timing.us:.3f}",
                fmt(timing.per_second),
                "-" if name.startswith("direct") else f"{timing.us - direct.us:.3f}",
                f"{timing.min_s * 1e6:.3f} to {timing.max_s * 1e6:.3f}",
                f"{timing.cpu_s * 1e6:.3f}",
            ]
        )
    overhead = max(send_overhead, ask_overhead)
    bus_rate = min(t["bus send"].per_second, t["bus ask"].per_second)
    vs_lato_send = t["lato send"].median_s / t["bus send"].median_s
    vs_lato_ask = t["lato ask"].median_s / t["bus ask"].median_s
    section.notes += [
        f"{repetitions} interleaved repetitions per contender (each {t['bus send'].iterations:,} "
        "messages for the bus); medians, and the spread between the fastest and slowest.",
        busy_note(t),
        f"bus overhead per message: send {send_overhead:.2f} µs, ask {ask_overhead:.2f} µs "
        f"(target ≤ {TARGET_OVERHEAD_US:g} µs).",
        f"bus throughput: {fmt(bus_rate)} messages/s, the slower of send and ask "
        f"(target ≥ {TARGET_MSGS_PER_S:,}).",
        f"bus vs lato: {vs_lato_send:.1f}x faster on send, {vs_lato_ask:.1f}x on ask "
        f"(target ≥ {TARGET_VS_LATO:g}x); lato per message: {t['lato send'].us:.1f} µs.",
        "direct call vs bus: the bus costs "
        f"{t['bus send'].median_s / t['direct send'].median_s:.1f}x a bare "
        "`await handler(message)` of a handler that does nothing.",
        "loopback send: the same bus with every envelope, message and result through the "
        "JSON wire codec and back (what a split pays before any network).",
    ]
    section.metrics = {
        "bus_overhead_us": round(overhead, 3),
        "bus_send_overhead_us": round(send_overhead, 3),
        "bus_ask_overhead_us": round(ask_overhead, 3),
        "bus_overhead_best_us": round(
            max(
                t["bus send"].min_s - t["direct send"].min_s,
                t["bus ask"].min_s - t["direct ask"].min_s,
            )
            * 1e6,
            3,
        ),
        "bus_send_us": round(t["bus send"].us, 3),
        "bus_ask_us": round(t["bus ask"].us, 3),
        "bus_msgs_per_s": round(bus_rate),
        "direct_msgs_per_s": round(t["direct send"].per_second),
        "lato_msgs_per_s": round(t["lato send"].per_second),
        "lato_us": round(t["lato send"].us, 3),
        "bus_vs_lato": round(min(vs_lato_send, vs_lato_ask), 2),
        "loopback_send_us": round(t["loopback send"].us, 3),
    }
    return section

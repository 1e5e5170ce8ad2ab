"""Run the benchmarks: ``python -m bench.run`` (full, writes bench/RESULTS.md) or ``--quick``.

Micro-benchmarks (items 1, 2) run pinned to one core; item 3 keeps the client on that core
and pins its servers to another; the end-to-end runs (items 5-6) unpin, because the load
generator and the server processes need the machine. Each section prints
as soon as it is measured; the last line of the output is one JSON object with every metric
(None for what is not measured yet), for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import bus, codec, memory, saga, transports
from bench.report import Section
from bench.timing import load_average, machine, pin_to_one_core, unpin

ITEMS = ("bus", "codec", "transports", "saga", "memory", "prices")
#: Run only when named in --only: measurements behind a past choice, not part of every run.
OPTIONAL = ("asgi",)
RESULTS = Path(__file__).with_name("RESULTS.md")
#: --quick must stay under a minute and a half: the deployments of item 5 get what the rest
#: leaves of this (the storage floor and item 6 then take a few seconds more).
QUICK_BUDGET = 80.0
#: The least item 5 gets in --quick, whatever the items before it took: four topologies.
QUICK_SAGA_FLOOR = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run, about a minute and a half"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated items to run, among {', '.join(ITEMS + OPTIONAL)} (default: "
        f"{', '.join(ITEMS)})",
    )
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=memory.TIME_LIMIT,
        help="full run: how long the monolith's 10,000-order memory series may take "
        f"(default {memory.TIME_LIMIT:.0f})",
    )
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        help="write the Markdown report here (default: bench/RESULTS.md for a full run of "
        "every item, nowhere otherwise)",
    )
    return parser


def _show(section: Section) -> None:
    print(section.text(), flush=True)


async def _run(
    items: Sequence[str], quick: bool, started: float, memory_seconds: float
) -> list[Section]:
    sections: list[Section] = []
    cpu = pin_to_one_core()
    print(f"micro-benchmarks pinned to CPU {cpu}; load average {load_average()}\n", flush=True)
    if "bus" in items:
        sections.append(await bus.measure(quick=quick))
        _show(sections[-1])
    if "codec" in items:
        sections.append(codec.measure(quick=quick))
        _show(sections[-1])
    if "transports" in items:
        for section in (
            await transports.measure_http(quick=quick),
            # It runs event loops of its own (plain dramatiq next to ours): off this one.
            await asyncio.to_thread(transports.measure_redis, quick=quick),
        ):
            sections.append(section)
            _show(section)
    unpin()
    runs: list[saga.Run] = []
    if "saga" in items:
        deadline = None
        if quick:  # time.monotonic is the event loop's clock
            # What is left of the budget, but enough to start and load each topology.
            left = max(QUICK_BUDGET - (time.monotonic() - started), QUICK_SAGA_FLOOR)
            deadline = asyncio.get_running_loop().time() + left
        saga_sections, runs = await saga.measure(quick=quick, deadline=deadline)
        for section in saga_sections:
            sections.append(section)
            _show(section)
    if "asgi" in items:  # bench/asgi_servers.py: the ASGI server, measured on the shop
        from bench import asgi_servers

        sections.append(await asgi_servers.measure(quick=quick))
        _show(sections[-1])
    if "memory" in items:
        for section in await memory.measure(quick=quick, saga_runs=runs, time_limit=memory_seconds):
            sections.append(section)
            _show(section)
    # A minute or two of deployments: in full runs, or in a quick one that names it.
    if "prices" in items and (not quick or items != ITEMS):
        from bench import price_cache

        sections.append(await price_cache.measure_section(quick=quick))
        _show(sections[-1])
    return sections


def _against_floor(m: dict[str, Any], floor: str, lead: str, ratio: str, digits: int) -> list[str]:
    """The summary's line for one storage floor: the monolith's and split-http's CPU per
    order at the fixed load as multiples of it (metrics ``saga_<topology>_<ratio>``)."""
    mono = m.get(f"saga_monolith_{ratio}")
    if mono is None:
        return []
    line = (
        f"- **CPU per order against {floor}**: {lead} spends {mono:.{digits}f}x that at the "
        "fixed load"
    )
    split = m.get(f"saga_split_http_{ratio}")
    if split is not None:
        line += f", split-http {split:.{digits}f}x"
    return [line + " (every process, the REST API and the polls included)."]


def _summary(m: dict[str, Any]) -> list[str]:
    """The key numbers and ratios, one line each, for the top of the report."""
    lines = []
    if m.get("bus_send_us") is not None:
        lines.append(
            f"- **bus**: {m['bus_overhead_us']:.2f} µs of overhead per message (the larger of "
            f"send and ask; {m['bus_overhead_best_us']:.2f} µs in the fastest repetitions), "
            f"{m['bus_msgs_per_s']:,} messages/s on one core; a direct call does "
            f"{m['direct_msgs_per_s']:,}/s; the bus is {m['bus_vs_lato']:.1f}x lato "
            f"({m['lato_msgs_per_s']:,}/s). Targets: ≤ 3 µs, ≥ 250,000/s, ≥ 5x lato."
        )
    if m.get("codec_msgspec_us") is not None:
        lines.append(
            f"- **codec**: an envelope with an order round-trips in {m['codec_msgspec_us']:.1f} µs "
            f"with msgspec, {m['codec_vs_pydantic']:.1f}x faster than pydantic v2 and "
            f"{m['codec_vs_json']:.1f}x faster than the json module."
        )
    for concurrency in (1, 32):
        ratio = m.get(f"http_vs_floor_c{concurrency}")
        if ratio is None:
            continue
        send, ask = f"http_send_msgpack_c{concurrency}", f"http_ask_msgpack_c{concurrency}"
        inner = m.get(f"http_send_msgpack_internal_only_c{concurrency}_vs_floor_per_s")
        line = (
            f"- **HTTP transport, concurrency {concurrency}**: send {m[f'{send}_per_s']:,.0f}/s "
            f"(p50 {m[f'{send}_p50_ms']:.2f} ms, p99 {m[f'{send}_p99_ms']:.2f} ms), ask "
            f"{m[f'{ask}_per_s']:,.0f}/s (p50 {m[f'{ask}_p50_ms']:.2f} ms); the bare-endpoint "
            f"floor makes {m[f'http_floor_c{concurrency}_per_s']:,.0f}/s, {ratio:.2f}x more "
            f"(target: within {transports.TARGET_VS_FLOOR}x)"
        )
        if inner is not None:
            line += (
                f"; behind the internal endpoints alone, without the service app's stack, "
                f"{inner:.2f}x"
            )
        lines.append(line + ".")
    for database in ("sqlite", "postgresql"):
        for topology in saga.TOPOLOGIES:
            key = f"saga_{topology.replace('-', '_')}_{database}"
            if m.get(f"{key}_orders_per_s") is None:
                continue
            line = (
                f"- **saga, {topology}, {database}**: {m[f'{key}_orders_per_s']} orders/s "
                f"(p50 {m[f'{key}_p50_ms']:.0f} ms, p99 {m[f'{key}_p99_ms']:.0f} ms, closed loop, "
                f"{m[f'{key}_cores']:.2f} cores)"
            )
            if m.get(f"{key}_fixed_load_cores") is not None:
                line += (
                    f"; at the fixed load {m[f'{key}_fixed_load_cores']:.2f} cores, "
                    f"{m[f'{key}_fixed_load_cpu_ms_per_order'] or float('nan'):.0f} ms CPU "
                    "per order, "
                    f"p50 {m[f'{key}_fixed_load_p50_ms']:.0f} ms, "
                    f"p99 {m[f'{key}_fixed_load_p99_ms']:.0f} ms"
                )
                if m.get(f"{key}_fixed_load_kept_up") == 0.0:
                    line += " (fell behind the offered load: not a steady-load figure)"
            price = m.get(f"saga_price_{topology.replace('-', '_')}_{database}_cpu")
            if price is not None:
                line += f" ({price:.2f}x the monolith's CPU)"
            lines.append(line + ".")
    floor_us = m.get("order_floor_core_sync_us")
    if floor_us is not None:
        lines += _against_floor(
            m,
            "the storage floor",
            f"SQLAlchemy Core (sync) runs one order's statements in {floor_us / 1000:.1f} ms "
            "of CPU; the monolith on SQLite",
            "sqlite_fixed_load_cpu_vs_core_sync_floor",
            digits=1,
        )
    pg_floor_us = m.get("order_floor_pg_core_async_paced_us")
    if pg_floor_us is not None:
        lines += _against_floor(
            m,
            "the PostgreSQL storage floor",
            f"SQLAlchemy Core async on asyncpg runs one order's statements in "
            f"{pg_floor_us / 1000:.1f} ms of CPU at 20 orders/s (raw asyncpg "
            f"{m['order_floor_pg_asyncpg_paced_us'] / 1000:.1f} ms); the monolith on PostgreSQL",
            "postgresql_fixed_load_cpu_vs_pg_core_async_paced_floor",
            digits=2,
        )
    if m.get("monolith_rss_idle_mib") is not None:
        line = f"- **memory**: the monolith idles at {m['monolith_rss_idle_mib']} MiB RSS"
        if m.get("monolith_rss_last_mib") is not None:
            line += f", {m['monolith_rss_last_mib']} MiB after {m['monolith_rss_orders']:,} orders"
        for topology in ("split_http", "mixed"):
            if m.get(f"{topology}_rss_mib") is not None:
                line += (
                    f"; {topology.replace('_', '-')} takes {m[f'{topology}_rss_mib']} MiB in all "
                    "after the load of item 5"
                )
        lines.append(line + ".")
    missing = [
        name
        for name, present in (
            ("the Redis transport (item 4)", m.get("redis_msgs_per_s") is not None),
            ("split-redis", m.get("saga_split_redis_sqlite_orders_per_s") is not None),
        )
        if not present
    ]
    if missing:
        lines.append(f"- **not measured yet**: {' and '.join(missing)}.")
    return lines


def markdown(sections: Sequence[Section], about: dict[str, Any], elapsed: float) -> str:
    """The report written to bench/RESULTS.md."""
    head = [
        "# Benchmark results",
        "",
        "Written by `just bench` (`python -m bench.run`). What each number means: "
        "[README.md](README.md). Nothing here passes or fails on time; ratios compare "
        "contenders measured in the same run.",
        "",
        f"- date: {about['date']}",
        f"- machine: {about['cpu']}, {about['cores']} cores, {about['os']}",
        f"- Python: {about['implementation']} {about['python']}",
        f"- load average when the run started: {about['load']}",
        f"- the run took {elapsed:.0f} s",
        *(
            [
                f"- a reduced run: the memory series of item 6 was limited to "
                f"{about['memory_seconds']:.0f} s (`--memory-seconds`; the default is "
                f"{memory.TIME_LIMIT:.0f} s)"
            ]
            if about.get("memory_seconds", memory.TIME_LIMIT) != memory.TIME_LIMIT
            else []
        ),
        "",
        "## Summary",
        "",
        *_summary(metrics(sections)),
        "",
        "## Measurements",
        "",
        "",
    ]
    return "\n".join(head) + "\n".join(section.markdown() for section in sections)


def metrics(sections: Sequence[Section]) -> dict[str, Any]:
    """Every section's metrics in one flat mapping."""
    merged: dict[str, Any] = {}
    for section in sections:
        merged.update(section.metrics)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    items = ITEMS if not arguments.only else tuple(arguments.only.split(","))
    unknown = set(items) - set(ITEMS + OPTIONAL)
    if unknown:
        print(f"unknown items: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    about = machine() | {"load": load_average()}
    if arguments.memory_seconds != memory.TIME_LIMIT:
        about["memory_seconds"] = arguments.memory_seconds
    started = time.monotonic()
    sections = asyncio.run(_run(items, arguments.quick, started, arguments.memory_seconds))
    elapsed = time.monotonic() - started
    target = arguments.write
    if target is None and not arguments.quick and items == ITEMS:
        target = RESULTS
    if target is not None:
        target.write_text(markdown(sections, about, elapsed), encoding="utf-8")
        print(f"wrote {target}", flush=True)
    summary = metrics(sections)
    summary.update(quick=arguments.quick, seconds=round(elapsed, 1), machine=about)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Item 6: resident memory of the monolith idle and over 10,000 orders; of each service of
the split topologies once they exist.

The monolith is started on a fresh SQLite database and seeded; its resident set size (RSS,
every process of the deployment) is read when idle, then every 100 settled orders of a
closed loop of 16 customers, for 10,000 orders or ``TIME_LIMIT`` seconds, whichever comes
first. Growth between the midway and the last reading (the 5,000th and the 10,000th order
when the shop gets there) is what a leak would show: it is called flat when it stays within
noise, taken here as 2% of the RSS or 2 MiB, whichever is larger (allocator arenas and
SQLite's page cache move by about that much on their own).
"""

from __future__ import annotations

import asyncio

from bench.deployment import MISSING, NotAvailable, start
from bench.load import LoadResult, ShopNotReady, closed_loop, seeded
from bench.report import Section, fmt
from bench.saga import Run

MIB = 1024 * 1024
ORDERS = 10_000
CHECKPOINT = 100
#: The full run stops placing orders after this long, wherever it got to.
TIME_LIMIT = 600.0


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / MIB:.1f}"


def _noise(rss: int) -> float:
    return max(0.02 * rss, 2 * MIB)


async def _monolith_series(
    orders: int, time_limit: float
) -> tuple[int, dict[int, int], LoadResult]:
    """Idle RSS, RSS at every checkpoint of settled orders, and the load run itself."""
    async with start("monolith", "sqlite") as deployment, seeded(deployment) as shop:
        await asyncio.sleep(2)  # let start-up work (relays, the first timers) settle
        idle = deployment.rss()
        series: dict[int, int] = {}

        def progress(settled: int) -> None:
            if settled % CHECKPOINT == 0:
                series[settled] = deployment.rss()

        result = await closed_loop(
            shop,
            deployment,
            orders=orders,
            concurrency=16,
            time_limit=time_limit,
            poll=0.005,
            progress=progress,
        )
        return idle, series, result


async def measure(*, quick: bool, saga_runs: list[Run]) -> Section:
    """Full run: 10,000 orders on the monolith. Quick run: the idle and after-load RSS of the
    saga run that just happened, with no series."""
    section = Section(
        title="6. Memory: resident set size (MiB)",
        headers=[
            "topology",
            "service",
            "idle",
            "midway (orders)",
            "at the end (orders)",
            "growth midway→end",
        ],
    )
    monolith = next(
        (run for run in saga_runs if run.topology == "monolith" and run.database == "sqlite"),
        None,
    )
    if quick:
        if monolith is not None and monolith.rss_idle is not None:
            settled = sum(r.completed for r in (monolith.closed, monolith.open) if r is not None)
            section.rows.append(
                ["monolith", "monolith (SQLite)", _mib(monolith.rss_idle), "-", "-", "-"]
            )
            section.notes.append(
                f"--quick: idle RSS, and {_mib(monolith.rss_after)} MiB after the "
                f"{settled} orders of item 5; the 10,000-order series runs only in the full run."
            )
            section.metrics = {
                "monolith_rss_idle_mib": round(monolith.rss_idle / MIB, 1),
                "monolith_rss_after_saga_mib": (
                    round(monolith.rss_after / MIB, 1) if monolith.rss_after else None
                ),
            }
        else:
            section.notes.append("not measured: the monolith did not run in item 5.")
            section.metrics = {"monolith_rss_idle_mib": None}
    else:
        await _full(section)
    for topology, reason in MISSING.items():
        section.rows.append([topology, "each service", f"not measured yet: {reason}", "", "", ""])
        section.metrics[f"{topology.replace('-', '_')}_rss_mib"] = None
    return section


async def _full(section: Section) -> None:
    try:
        idle, series, result = await _monolith_series(ORDERS, time_limit=TIME_LIMIT)
    except (NotAvailable, ShopNotReady) as error:
        section.rows.append(["monolith", "monolith (SQLite)", f"not measured: {error}", "", "", ""])
        section.metrics = {"monolith_rss_idle_mib": None}
        return
    last = max(series, default=None)
    middle = None if last is None else min(series, key=lambda n: abs(n - last / 2))
    half, full = series.get(middle or -1), series.get(last or -1)
    growth = None if half is None or full is None or middle == last else full - half
    section.rows.append(
        [
            "monolith",
            "monolith (SQLite)",
            _mib(idle),
            f"{_mib(half)} ({middle:,})" if half is not None else "-",
            f"{_mib(full)} ({last:,})" if full is not None else "-",
            "-" if growth is None else f"{growth / MIB:+.1f}",
        ]
    )
    shown = sorted(series.items())[:: max(1, len(series) // 10)]
    section.notes.append(
        "RSS (MiB) after so many settled orders: "
        + ", ".join(f"{n:,}: {size / MIB:.1f}" for n, size in shown)
        + f" MiB; {result.completed:,} orders settled at {fmt(result.per_second, 1)}/s "
        f"({', '.join(f'{c} {s}' for s, c in sorted(result.statuses.items()))})."
    )
    if growth is None:
        section.notes.append("too few readings to tell growth from noise.")
    elif result.completed < ORDERS:
        section.notes.append(
            f"the shop settled {result.completed:,} of the {ORDERS:,} orders within the "
            f"{TIME_LIMIT:.0f} s allowed, so the growth is read between the {middle:,}th and "
            f"the {last:,}th order instead of the 5,000th and the 10,000th."
        )
    if growth is not None and full is not None:
        flat = abs(growth) <= _noise(full)
        section.notes.append(
            f"growth from the {middle:,}th to the {last:,}th order: {growth / MIB:+.1f} MiB "
            f"({growth / (last - middle):+.0f} bytes per order): "
            + ("flat, within noise" if flat else "beyond noise (2% of RSS or 2 MiB)")
            + "."
        )
    section.metrics = {
        "monolith_rss_idle_mib": round(idle / MIB, 1),
        "monolith_rss_mid_mib": round(half / MIB, 1) if half else None,
        "monolith_rss_last_mib": round(full / MIB, 1) if full else None,
        "monolith_rss_orders": last,
        "monolith_rss_growth_mib": round(growth / MIB, 2) if growth is not None else None,
    }

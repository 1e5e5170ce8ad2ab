"""Item 6: resident memory of the monolith idle and over 10,000 orders; of each service of
every topology idle and after the load of item 5.

The monolith is started on a fresh SQLite database and seeded; its resident set size (RSS,
every process of the deployment) is read when idle, then every 100 settled orders of a
closed loop of 16 customers, for 10,000 orders or ``TIME_LIMIT`` seconds, whichever comes
first. Growth between the midway and the last reading (the 5,000th and the 10,000th order
when the shop gets there) is what a leak would show: it is called flat when it stays within
noise, taken here as 2% of the RSS or 2 MiB, whichever is larger (allocator arenas and
SQLite's page cache move by about that much on their own).

Each service of each deployment of item 5 (the monolith's one process, split-http's gateway
and six module services, mixed's three) is read twice there: idle after seeding, and after
the warm-up, the closed loop and the fixed load.
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


async def measure(
    *, quick: bool, saga_runs: list[Run], time_limit: float = TIME_LIMIT
) -> list[Section]:
    """Full run: 10,000 orders (or ``time_limit`` seconds) on the monolith. Quick run: the
    idle and after-load RSS of the saga run that just happened, with no series. Both: the
    RSS of each service of every deployment of item 5."""
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
            idle, after = _total(monolith.rss_idle), _total(monolith.rss_after)
            section.rows.append(["monolith", "monolith (SQLite)", _mib(idle), "-", "-", "-"])
            section.notes.append(
                f"--quick: idle RSS, and {_mib(after)} MiB after the {monolith.settled} orders "
                "of item 5; the 10,000-order series runs only in the full run."
            )
            section.metrics = {
                "monolith_rss_idle_mib": round(idle / MIB, 1) if idle else None,
                "monolith_rss_after_saga_mib": round(after / MIB, 1) if after else None,
            }
        else:
            section.notes.append("not measured: the monolith did not run in item 5.")
            section.metrics = {"monolith_rss_idle_mib": None}
    else:
        await _full(section, time_limit)
    return [section, _services(saga_runs)]


def _total(sizes: dict[str, int] | None) -> int | None:
    return None if not sizes else sum(sizes.values())


def _services(runs: list[Run]) -> Section:
    """The RSS of each service of every deployment of item 5, idle and after its load."""
    section = Section(
        title="6. Memory of each service, idle and after the load of item 5 (MiB)",
        headers=["topology", "database", "service", "idle", "after the load", "growth"],
    )
    for run in runs:
        key = f"{run.topology.replace('-', '_')}_{run.database}"
        if run.rss_idle is None:
            section.rows.append(
                [
                    run.topology,
                    run.database,
                    "each service",
                    f"not measured yet: {run.missing}",
                    "",
                    "",
                ]
            )
            section.metrics[f"rss_{key}_total_mib"] = None
            continue
        after = run.rss_after or {}
        for service, idle in run.rss_idle.items():
            last = after.get(service)
            section.rows.append(
                [
                    run.topology,
                    run.database,
                    service,
                    _mib(idle),
                    _mib(last),
                    "-" if last is None else f"{(last - idle) / MIB:+.1f}",
                ]
            )
            section.metrics[f"rss_{key}_{service}_idle_mib"] = round(idle / MIB, 1)
            section.metrics[f"rss_{key}_{service}_after_mib"] = (
                round(last / MIB, 1) if last is not None else None
            )
        if len(run.rss_idle) > 1:
            total_idle, total_after = _total(run.rss_idle), _total(run.rss_after)
            section.rows.append(
                [
                    run.topology,
                    run.database,
                    f"all {len(run.rss_idle)} processes",
                    _mib(total_idle),
                    _mib(total_after),
                    "-"
                    if total_after is None or total_idle is None
                    else f"{(total_after - total_idle) / MIB:+.1f}",
                ]
            )
        total = _total(run.rss_after) or _total(run.rss_idle)
        section.metrics[f"rss_{key}_total_mib"] = round(total / MIB, 1) if total else None
        if run.database == "sqlite":
            # The figure the first version of this report named per topology.
            section.metrics[f"{run.topology.replace('-', '_')}_rss_mib"] = section.metrics[
                f"rss_{key}_total_mib"
            ]
    settled = {(run.topology, run.database): run.settled for run in runs if run.rss_after}
    if settled:
        section.notes.append(
            "after the load: after the warm-up, the closed loop and the fixed load of item 5 ("
            + ", ".join(f"{t} on {d}: {n:,} orders" for (t, d), n in settled.items())
            + "); idle: right after seeding. "
            "RSS of each process with its children; the sandbox payment provider is not counted."
        )
    for topology in MISSING:
        section.metrics.setdefault(f"{topology.replace('-', '_')}_rss_mib", None)
    return section


async def _full(section: Section, time_limit: float) -> None:
    try:
        idle, series, result = await _monolith_series(ORDERS, time_limit=time_limit)
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
            f"{time_limit:.0f} s allowed, so the growth is read between the {middle:,}th and "
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

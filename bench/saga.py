"""Item 5: the whole order saga, end to end through the REST API of real processes.

For each topology and database: start the deployment on a fresh database, seed it, warm it
up, then

- closed loop: ``concurrency`` customers each place an order and wait for it to settle,
  again and again: orders per second to a terminal state, p50/p99 latency;
- open loop: a fixed offered load (orders per second, whatever the answers): the CPU the
  deployment uses in all (every process, in cores) and p50/p99 latency, side by side, as the
  Service Weaver paper compares its monolith and its microservices.

Clients wait for their orders (``GET /orders/{id}?wait=30``); on the monolith both loops run
again with clients that poll instead, and the two are reported side by side.

The monolith/split ratio is the price of splitting. The topologies are the files of
``topologies/`` (monolith, split-http, mixed), started as ``cleave up`` starts them; a
topology whose transport does not exist yet is listed and skipped. After the deployments,
the storage floor of one order (``bench.floor``) runs, and each deployment's CPU per order
is read against it; when deployments ran on PostgreSQL, the same order on PostgreSQL
(``bench.pg_floor``) runs too, and their CPU per order is read against that as well.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from bench import floor
from bench.deployment import DatabaseKind, NotAvailable, TopologyName, postgres_available, start
from bench.load import LoadResult, ShopNotReady, closed_loop, open_loop, seeded
from bench.report import Section, fmt

TOPOLOGIES: tuple[TopologyName, ...] = ("monolith", "split-http", "mixed", "split-redis")
#: Where clients that poll are measured next to clients that wait.
POLLING_TOPOLOGIES: tuple[TopologyName, ...] = ("monolith",)
#: The topologies compared with the monolith (the price of each).
SPLITS: tuple[TopologyName, ...] = TOPOLOGIES[1:]
DATABASES: tuple[DatabaseKind, ...] = ("sqlite", "postgresql")
#: The PostgreSQL floor's figures (``floor.PG_PATHS``) under their metric names.
PG_FLOOR_METRICS = {
    "asyncpg_closed_us": "order_floor_pg_asyncpg_closed_us",
    "asyncpg_paced_us": "order_floor_pg_asyncpg_paced_us",
    "sqlalchemy_core_async_closed_us": "order_floor_pg_core_async_closed_us",
    "sqlalchemy_core_async_paced_us": "order_floor_pg_core_async_paced_us",
}


@dataclass(frozen=True)
class SagaPlan:
    """How much load each run offers (bounded in count and in time)."""

    orders: int
    concurrency: int
    time_limit: float
    #: The highest fixed load offered, in orders per second (see ``OfferedLoad``).
    max_rate: float
    duration: float
    poll: float
    warmup: int
    databases: tuple[DatabaseKind, ...]
    products: int = 20
    customers: int = 16


FULL = SagaPlan(
    orders=2_000,
    concurrency=16,
    time_limit=60,
    max_rate=100,
    duration=20,
    poll=0.005,
    warmup=30,
    databases=DATABASES,
)
QUICK = SagaPlan(
    orders=100,
    concurrency=4,
    time_limit=4,
    max_rate=20,
    duration=3,
    poll=0.005,
    warmup=6,
    databases=("sqlite",),
    products=10,
    customers=4,
)


def nice_floor(value: float) -> float:
    """The largest 1, 2 or 5 times a power of ten that is at most ``value`` (at least 0.1)."""
    best = 0.1
    for exponent in range(-1, 6):
        for mantissa in (1, 2, 5):
            candidate = mantissa * 10.0**exponent
            if candidate <= value:
                best = candidate
    return best


class OfferedLoad:
    """The one fixed load every deployment of a run is offered, so that their CPU and
    latency compare: ``max_rate`` orders/s (the issue's 100), or half of what the first
    deployment measured (the monolith on SQLite) settles in its closed loop when that is
    less, rounded down to 1, 2 or 5 times a power of ten. A load the deployment cannot
    carry would measure its queue, not its cost."""

    def __init__(self, max_rate: float) -> None:
        self.max_rate = max_rate
        self.rate: float | None = None

    def choose(self, closed: LoadResult) -> float:
        if self.rate is None:
            self.rate = min(self.max_rate, nice_floor(0.5 * closed.per_second))
        return self.rate


@dataclass
class Run:
    """One deployment's results, or why it was not measured."""

    topology: TopologyName
    database: DatabaseKind
    closed: LoadResult | None = None
    open: LoadResult | None = None
    #: The same loops with clients that poll instead of waiting (``POLLING_TOPOLOGIES``).
    polled_closed: LoadResult | None = None
    polled_open: LoadResult | None = None
    #: Resident memory of each service, idle after seeding and after the load.
    rss_idle: dict[str, int] | None = None
    rss_after: dict[str, int] | None = None
    missing: str | None = None
    #: Seconds from the start of the processes until every one answered /health/ready.
    start_s: float | None = None

    @property
    def settled(self) -> int:
        """Orders that reached a terminal state in this run (warm-up not counted)."""
        return sum(result.completed for result in (self.closed, self.open) if result is not None)


async def run_one(
    topology: TopologyName,
    database: DatabaseKind,
    plan: SagaPlan,
    load: OfferedLoad,
    deadline: float | None = None,
) -> Run:
    """Start, seed, warm up and measure one deployment; stop at ``deadline`` (event-loop
    time), keeping whatever was measured by then."""
    run = Run(topology, database)
    began = time.monotonic()
    try:
        async with asyncio.timeout_at(deadline), start(topology, database) as deployment:
            run.start_s = time.monotonic() - began
            async with seeded(deployment, products=plan.products, customers=plan.customers) as shop:
                run.rss_idle = deployment.rss_by_service()
                await closed_loop(
                    shop,
                    deployment,
                    orders=plan.warmup,
                    concurrency=4,
                    time_limit=15,
                    poll=plan.poll,
                )
                run.closed = await closed_loop(
                    shop,
                    deployment,
                    orders=plan.orders,
                    concurrency=plan.concurrency,
                    time_limit=plan.time_limit,
                    poll=plan.poll,
                )
                run.open = await open_loop(
                    shop,
                    deployment,
                    rate=load.choose(run.closed),
                    duration=plan.duration,
                    poll=plan.poll,
                )
                if topology in POLLING_TOPOLOGIES:
                    run.polled_closed = await closed_loop(
                        shop,
                        deployment,
                        orders=plan.orders,
                        concurrency=plan.concurrency,
                        time_limit=plan.time_limit,
                        poll=plan.poll,
                        wait=None,
                    )
                    run.polled_open = await open_loop(
                        shop,
                        deployment,
                        rate=load.choose(run.closed),
                        duration=plan.duration,
                        poll=plan.poll,
                        wait=None,
                    )
                run.rss_after = deployment.rss_by_service()
    except (NotAvailable, ShopNotReady) as error:
        run.missing = str(error)
    except TimeoutError:
        run.missing = "did not finish within the time allowed"
    return run


async def measure(*, quick: bool, deadline: float | None = None) -> tuple[list[Section], list[Run]]:
    """Every topology on every database of the plan; placeholders for what cannot run; then
    the storage floor of an order. ``deadline`` (event-loop time) bounds the deployments."""
    plan = QUICK if quick else FULL
    postgres_missing = await postgres_available() if "postgresql" in plan.databases else None
    runs: list[Run] = []
    load = OfferedLoad(plan.max_rate)
    for topology in TOPOLOGIES:
        for database in plan.databases:
            if database == "postgresql" and postgres_missing is not None:
                runs.append(Run(topology, database, missing=postgres_missing))
            else:
                runs.append(await run_one(topology, database, plan, load, deadline))
    order_floor = await floor.measure(quick=quick)
    # The same order on PostgreSQL, when there is a PostgreSQL deployment to read against it.
    pg_measured = any(
        run.database == "postgresql" and (run.closed is not None or run.open is not None)
        for run in runs
    )
    pg_floor = await floor.measure_postgresql(quick=quick) if pg_measured else None
    return [
        _throughput(runs, plan),
        _fixed_load(runs, plan, load),
        _waiting_vs_polling(runs, plan),
        _against_floor(runs, order_floor, pg_floor),
    ], runs


def _waiting_vs_polling(runs: list[Run], plan: SagaPlan) -> Section:
    section = Section(
        title="5. Clients that wait (GET /orders/{id}?wait=30) next to clients that poll",
        headers=[
            "topology",
            "database",
            "loop",
            "client",
            "orders / s",
            "p50 ms",
            "p99 ms",
            "GETs / order",
            "CPU ms / order",
        ],
    )
    for run in runs:
        if run.polled_closed is None and run.polled_open is None:
            continue
        loops = [
            ("closed", "waits", run.closed),
            ("closed", "polls", run.polled_closed),
            ("fixed load", "waits", run.open),
            ("fixed load", "polls", run.polled_open),
        ]
        key = f"saga_{run.topology.replace('-', '_')}_{run.database}"
        for loop, client, result in loops:
            if result is None:
                continue
            section.rows.append(
                [
                    run.topology,
                    run.database,
                    loop,
                    client,
                    fmt(
                        result.per_second if loop == "closed" else result.completed / plan.duration,
                        1,
                    ),
                    fmt(result.latency_ms(0.50), 1),
                    fmt(result.latency_ms(0.99), 1),
                    f"{result.polls_per_order:.1f}",
                    _ms(result.cpu_ms_per_order),
                ]
            )
            label = f"{key}_{loop.replace(' ', '_')}_{client}"
            section.metrics[f"{label}_gets_per_order"] = round(result.polls_per_order, 2)
            section.metrics[f"{label}_cpu_ms_per_order"] = _round(result.cpu_ms_per_order)
    section.notes.append(
        "the same deployment, customers and orders; a polling client asks after "
        f"{plan.poll * 1000:.0f} ms, then every tenth of the time waited (at most 100 ms "
        "apart). GETs / order counts the GET /orders/{id} requests after the POST."
    )
    return section


def _missing(run: Run) -> str:
    return f"not measured yet: {run.missing}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else fmt(value, 1)


def _by_service(cores: dict[str, float]) -> str:
    ordered = sorted(cores.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {value:.2f}" for name, value in ordered)


def _throughput(runs: list[Run], plan: SagaPlan) -> Section:
    section = Section(
        title="5. Order saga, closed loop: orders per second to a terminal state",
        headers=[
            "topology",
            "database",
            "orders / s",
            "p50 ms",
            "p99 ms",
            "outcomes",
            "server CPU cores",
            "CPU ms / order",
            "SQL statements / order",
            "SQL transactions / order",
            "PostgreSQL round trips / order",
            "client CPU cores",
        ],
    )
    for run in runs:
        closed = run.closed
        if closed is None:
            section.rows.append([run.topology, run.database, _missing(run), *[""] * 9])
            continue
        section.rows.append(
            [
                run.topology,
                run.database,
                fmt(closed.per_second, 1),
                fmt(closed.latency_ms(0.50), 1),
                fmt(closed.latency_ms(0.99), 1),
                ", ".join(f"{count} {status}" for status, count in sorted(closed.statuses.items())),
                f"{closed.server_cores:.2f}",
                _ms(closed.cpu_ms_per_order),
                _ms(closed.statements_per_order),
                _ms(closed.transactions_per_order),
                _round_trips(run, closed),
                f"{closed.client_cores:.2f}",
            ]
        )
    section.notes.append(
        f"{plan.concurrency} customers in a closed loop, {plan.orders:,} orders (at most "
        f"{plan.time_limit:.0f} s) after {plan.warmup} warm-up orders; each order has 1 to 3 "
        "lines and pays with tok_ok; the client waits with GET /orders/{id}?wait=30 until the "
        "order is terminal (clients that poll instead: the waiting/polling table). CPU ms / "
        "order is the CPU of every process of the deployment over the loop divided by the "
        "orders settled; SQL statements and transactions / order the same for the statements "
        "every process serving HTTP ran (cleave_sql_*_total on /metrics, counted with "
        "CLEAVE_BENCH_COUNT_SQL=1; a process without /metrics is not counted). PostgreSQL "
        "round trips / order: statements + BEGINs sent on their own + COMMITs and "
        "ROLLBACKs (a BEGIN sent with its transaction's first statement is no round trip of "
        "its own; ADR 17 section 12); each one costs the client a write, a wait and a read."
    )
    section.metrics = _metrics(runs)
    by_key = {(run.topology, run.database): run for run in runs}
    for database in plan.databases:
        mono = by_key.get(("monolith", database))
        for split in SPLITS:
            other = by_key.get((split, database))
            key = f"saga_price_{split.replace('-', '_')}_{database}_throughput"
            section.metrics[key] = None
            if mono and mono.closed and other and other.closed and other.closed.per_second:
                ratio = mono.closed.per_second / other.closed.per_second
                section.metrics[key] = round(ratio, 2)
                section.notes.append(
                    f"price of {split} on {database}: the monolith settles {ratio:.2f}x the "
                    f"orders per second; the split's p50 is "
                    f"{other.closed.latency_ms(0.5) / mono.closed.latency_ms(0.5):.2f}x the "
                    f"monolith's, its CPU per order "
                    f"{other.closed.cpu_ms_per_order / mono.closed.cpu_ms_per_order:.2f}x."
                )
            else:
                reason = other.missing if other and other.missing else "not run"
                section.notes.append(
                    f"price of {split} on {database} (monolith/split ratio): "
                    f"not measured yet: {reason}."
                )
    for run in runs:
        if run.closed is not None and len(run.closed.cores_by_service) > 1:
            section.notes.append(
                f"{run.topology} on {run.database}, CPU cores by service in the closed loop: "
                f"{_by_service(run.closed.cores_by_service)}."
            )
    polled = [run for run in runs if run.closed is not None]
    if polled:
        section.notes.append(
            "GET /orders/{id}?wait= requests per order in the closed loop (each is a request the "
            "deployment serves, through the gateway and, split, one more hop to ordering): "
            + ", ".join(
                f"{run.topology} on {run.database} {run.closed.polls_per_order:.1f}"
                for run in polled
                if run.closed is not None
            )
            + "."
        )
    started = [run for run in runs if run.start_s is not None]
    if started:
        section.notes.append(
            "seconds from starting the processes to every one answering /health/ready: "
            + ", ".join(f"{run.topology} on {run.database} {run.start_s:.1f}" for run in started)
            + " (all processes start at once and share the machine)."
        )
    return section


def _fixed_load(runs: list[Run], plan: SagaPlan, load: OfferedLoad) -> Section:
    rate = load.rate
    section = Section(
        title="5. Order saga at a fixed offered load"
        + (f" of {rate:g} orders/s" if rate is not None else ""),
        headers=[
            "topology",
            "database",
            "offered / s",
            "settled / s",
            "CPU cores (all processes)",
            "CPU ms / order",
            "SQL statements / order",
            "SQL transactions / order",
            "PostgreSQL round trips / order",
            "p50 ms",
            "p99 ms",
            "client CPU cores",
        ],
    )
    for run in runs:
        opened = run.open
        if opened is None:
            section.rows.append([run.topology, run.database, _missing(run), *[""] * 9])
            continue
        section.rows.append(
            [
                run.topology,
                run.database,
                f"{opened.offered_per_s:g}",
                fmt(opened.settled_in_time(plan.duration) / plan.duration, 1),
                f"{opened.server_cores:.3f}",
                _ms(opened.cpu_ms_per_order),
                _ms(opened.statements_per_order),
                _ms(opened.transactions_per_order),
                _round_trips(run, opened),
                fmt(opened.latency_ms(0.50), 1),
                fmt(opened.latency_ms(0.99), 1),
                f"{opened.client_cores:.2f}",
            ]
        )
    section.notes += [
        f"{rate or 0:g} orders/s offered for {plan.duration:g} s in an open loop: "
        f"{plan.max_rate:g}/s, or half the closed-loop throughput of the first deployment "
        "when that is less (rounded down to 1, 2 or 5 x 10^n), the same for every deployment. "
        "CPU is the sum of user + system time of every process of the deployment over the "
        "offering window, divided by its length (the sandbox payment provider runs as a "
        "process of its own, outside the deployment, and is not counted; so is the load "
        "generator). CPU ms / order is that CPU time divided by the orders offered in the "
        "window. Latency counts from when each order was due.",
        "settled / s is orders offered in the window that reached a terminal state by its end "
        "(plus a second), divided by the window: below the offered rate means the deployment "
        "fell behind, and its CPU per order is not that of a steady load (the rest of its "
        "orders settled later, outside the measured window).",
    ]
    by_key = {(run.topology, run.database): run for run in runs}
    for database in plan.databases:
        mono = by_key.get(("monolith", database))
        for split in SPLITS:
            other = by_key.get((split, database))
            key = f"saga_price_{split.replace('-', '_')}_{database}_cpu"
            if mono and mono.open and other and other.open and mono.open.server_cores:
                ratio = other.open.server_cores / mono.open.server_cores
                section.metrics[key] = round(ratio, 2)
                section.notes.append(
                    f"{split} on {database} uses {ratio:.2f}x the CPU of the monolith at this "
                    f"load; its p50 is "
                    f"{other.open.latency_ms(0.5) / mono.open.latency_ms(0.5):.2f}x the "
                    f"monolith's, its p99 "
                    f"{other.open.latency_ms(0.99) / mono.open.latency_ms(0.99):.2f}x."
                )
            else:
                section.metrics[key] = None
                reason = other.missing if other and other.missing else "not run"
                section.notes.append(
                    f"{split}/monolith CPU at this load on {database}: not measured yet: {reason}."
                )
    for run in runs:
        if run.open is not None and len(run.open.cores_by_service) > 1:
            section.notes.append(
                f"{run.topology} on {run.database}, CPU cores by service at this load: "
                f"{_by_service(run.open.cores_by_service)}."
            )
    section.metrics["saga_fixed_load_per_s"] = rate
    return section


def kept_up(result: LoadResult) -> bool:
    """Whether an open loop's orders settled within its window (95% of them): its CPU per
    order is then that of a steady load."""
    return result.settled_in_time(result.elapsed_s) >= 0.95 * len(result.outcomes)


def _against_floor(
    runs: list[Run], order_floor: floor.Floor, pg_floor: floor.Floor | None = None
) -> Section:
    """Each deployment's CPU per order next to the storage floor of an order: SQLite's for
    every deployment; PostgreSQL's (``bench.pg_floor``), when it ran, for those on
    PostgreSQL, loop for loop (closed loop to closed loop, fixed load to paced)."""
    on_postgresql = any(run.database == "postgresql" for run in runs)
    section = Section(
        title="5. CPU per order against the storage floor of an order",
        headers=[
            "contender",
            "CPU ms / order",
            "vs SQLAlchemy Core sync",
            *(["vs PostgreSQL floor, Core async"] if on_postgresql else []),
        ],
    )
    pad = [""] if on_postgresql else []
    base = order_floor.core_sync_ms
    section.metrics["order_floor_sqlite3_us"] = order_floor.us.get("sqlite3_us")
    section.metrics["order_floor_core_sync_us"] = order_floor.us.get("sqlalchemy_core_sync_us")
    section.metrics["order_floor_core_async_us"] = order_floor.us.get("sqlalchemy_core_async_us")
    if order_floor.missing is not None:
        section.notes.append(f"the storage floor was not measured: {order_floor.missing}")
    for key, label in floor.PATHS.items():
        if key in order_floor.us:
            value = order_floor.us[key] / 1000
            ratio = f"{value / base:.2f}x" if base else "-"
            section.rows.append([f"floor: {label}", fmt(value, 2), ratio, *pad])
    #: The PostgreSQL floor's SQLAlchemy Core async figure each loop is read against.
    pg_base: dict[str, float | None] = {}
    if on_postgresql:
        pg = pg_floor if pg_floor is not None else floor.Floor({})
        for key, name in PG_FLOOR_METRICS.items():
            section.metrics[name] = pg.us.get(key)
        pg_base = {
            "closed": pg.ms("sqlalchemy_core_async_closed_us"),
            "fixed_load": pg.ms("sqlalchemy_core_async_paced_us"),
        }
        for key, label in floor.PG_PATHS.items():
            pg_value = pg.ms(key)
            if pg_value is None:
                continue
            mode = "closed" if key.endswith("_closed_us") else "fixed_load"
            own = pg_base[mode]
            section.rows.append(
                [
                    f"PostgreSQL floor: {label}",
                    fmt(pg_value, 2),
                    f"{pg_value / base:.2f}x" if base else "-",
                    f"{pg_value / own:.2f}x" if own else "-",
                ]
            )
        if pg_floor is None:
            section.notes.append(
                "the PostgreSQL storage floor was not measured: no deployment on PostgreSQL "
                "was measured."
            )
        elif pg_floor.missing is not None:
            section.notes.append(
                f"the PostgreSQL storage floor was not measured: {pg_floor.missing}"
            )
        else:
            section.notes += _round_trip_notes(runs, pg_floor, section.metrics)
    for run in runs:
        key = f"saga_{run.topology.replace('-', '_')}_{run.database}"
        for label, result, suffix in (
            ("closed loop", run.closed, "closed"),
            ("fixed load", run.open, "fixed_load"),
        ):
            if result is None or math.isnan(result.cpu_ms_per_order):
                continue
            ms = result.cpu_ms_per_order
            behind = result is run.open and not kept_up(result)
            row = [
                # Orders that settled after the window are not in its CPU: not a steady load.
                f"{run.topology} on {run.database}, {label}" + (" (fell behind)" if behind else ""),
                fmt(ms, 1),
                f"{ms / base:.1f}x" if base else "-",
                *pad,
            ]
            section.metrics[f"{key}_{suffix}_cpu_vs_core_sync_floor"] = (
                round(ms / base, 1) if base else None
            )
            if run.database == "postgresql":
                own = pg_base.get(suffix)
                row[-1] = f"{ms / own:.2f}x" if own else "-"
                floor_name = "closed" if suffix == "closed" else "paced"
                section.metrics[f"{key}_{suffix}_cpu_vs_pg_core_async_{floor_name}_floor"] = (
                    round(ms / own, 2) if own else None
                )
            section.rows.append(row)
    if order_floor.missing is None:
        section.notes.append(
            f"the floor: {floor.SCRIPT.name} (outside this repository) replays the SQL "
            "statements of one order on SQLite with no bus, HTTP or framework, "
            f"{order_floor.orders} orders per path, median of {order_floor.rounds} rounds, "
            "CPU time of its own process (pinned to one core), run with this virtualenv after "
            "the deployments stopped."
        )
    if pg_floor is not None and pg_floor.missing is None:
        meta = pg_floor.meta
        section.notes.append(
            "the PostgreSQL floor: bench.pg_floor replays the same order on PostgreSQL "
            f"{meta.get('postgresql', '')} in a schema of its own ("
            f"{meta.get('statements_per_order', '?')} statements: "
            f"{meta.get('transactions_per_order', '?')} transactions, and the relay's "
            f"{meta.get('autocommit_statements_per_order', '?')} reads and deletes each on "
            "its own in autocommit mode, as the shop runs them), on one connection per path, "
            "the same way as the SQLite floor; closed loop: "
            f"{pg_floor.orders} orders back to back; paced: "
            f"{meta.get('paced_orders', '?')} orders, one every 50 ms (20 orders/s), where "
            "every round trip pays the wake-up of an idle event loop, as at the deployments' "
            "fixed load (whose rate is item 5's, 20 orders/s or more: the slower the rate, "
            "the more wake-ups per order). A deployment on PostgreSQL is read against the "
            "SQLAlchemy Core async figure of its kind of loop (closed loop against closed "
            "loop, fixed load against paced). Neither counts PostgreSQL's own CPU."
        )
    section.notes.append(
        "Cleave's CPU per order counts every process of the deployment: the REST API and the "
        "client's polls, the bus, the outboxes and relays, and the storage work the floor "
        "does alone; a split adds the internal HTTP hops. The ratio is what the whole stack "
        "costs above the bare storage statements."
    )
    return section


def _metrics(runs: list[Run]) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for run in runs:
        key = f"saga_{run.topology.replace('-', '_')}_{run.database}"
        closed, opened = run.closed, run.open
        metrics[f"{key}_orders_per_s"] = round(closed.per_second, 1) if closed else None
        metrics[f"{key}_p50_ms"] = round(closed.latency_ms(0.5), 1) if closed else None
        metrics[f"{key}_p99_ms"] = round(closed.latency_ms(0.99), 1) if closed else None
        metrics[f"{key}_cores"] = round(closed.server_cores, 3) if closed else None
        metrics[f"{key}_cpu_ms_per_order"] = _round(closed.cpu_ms_per_order) if closed else None
        metrics[f"{key}_fixed_load_cores"] = round(opened.server_cores, 3) if opened else None
        metrics[f"{key}_fixed_load_kept_up"] = float(kept_up(opened)) if opened else None
        metrics[f"{key}_fixed_load_p50_ms"] = round(opened.latency_ms(0.5), 1) if opened else None
        metrics[f"{key}_fixed_load_p99_ms"] = round(opened.latency_ms(0.99), 1) if opened else None
        metrics[f"{key}_fixed_load_cpu_ms_per_order"] = (
            _round(opened.cpu_ms_per_order) if opened else None
        )
        for label, result in (("", closed), ("fixed_load_", opened)):
            metrics[f"{key}_{label}statements_per_order"] = (
                _round(result.statements_per_order) if result else None
            )
            metrics[f"{key}_{label}transactions_per_order"] = (
                _round(result.transactions_per_order) if result else None
            )
            if run.database == "postgresql":
                metrics[f"{key}_{label}round_trips_per_order"] = (
                    _round(result.round_trips_per_order) if result else None
                )
    return metrics


def _round_trip_notes(
    runs: list[Run], pg_floor: floor.Floor, metrics: dict[str, float | None]
) -> list[str]:
    """What one round trip to PostgreSQL costs raw asyncpg on this machine, and what the
    monolith's round trips would cost at that price alone: on PostgreSQL, CPU per order
    follows the round trips, whose price moves with the machine far more than Python's."""
    trips = pg_floor.meta.get("round_trips_per_order")
    paced = pg_floor.us.get("asyncpg_paced_us")
    if not trips or paced is None:
        return []
    each = paced / trips
    metrics["pg_floor_asyncpg_paced_us_per_round_trip"] = round(each, 1)
    note = (
        f"one round trip costs raw asyncpg {each:.0f} µs of CPU at 20 orders/s on this "
        f"machine (the PostgreSQL floor's asyncpg figure over its {trips} round trips)"
    )
    mono = next((r for r in runs if r.topology == "monolith" and r.database == "postgresql"), None)
    if mono is not None and mono.open is not None:
        shop = mono.open.round_trips_per_order
        if not math.isnan(shop):
            note += (
                f"; the monolith's {shop:.1f} round trips per order at its fixed load would "
                f"cost {shop * each / 1000:.1f} ms at that price alone, of its "
                f"{mono.open.cpu_ms_per_order:.1f} ms"
            )
    return [note + "."]


def _round_trips(run: Run, result: LoadResult) -> str:
    """Round trips to PostgreSQL per order: SQLite has none (its calls are in process)."""
    return _ms(result.round_trips_per_order) if run.database == "postgresql" else "-"


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)

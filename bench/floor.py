"""The storage floor of one order: ``../shared/floors/order_floor.py``, run beside item 5.

That script (outside this repository, shared by the projects it compares) replays the SQL
statements one order of the shop costs on SQLite, with no bus, no HTTP and no framework,
and prints the CPU microseconds per order of three paths: stdlib ``sqlite3`` with prepared
statements, SQLAlchemy Core (sync, statements built once) and SQLAlchemy Core async on
aiosqlite. It runs here with this interpreter (the project's virtualenv), in a process of
its own pinned to one core, after the deployments of item 5 have stopped; Cleave's CPU per
settled order is then read as a multiple of the SQLAlchemy-Core-sync figure. It is a floor
of the storage work alone: Cleave's figure also pays for the REST API, the client's polls,
the bus and every process of the deployment.

When item 5 ran deployments on PostgreSQL, ``bench.pg_floor`` (in this repository) replays
the same order on PostgreSQL the same way (raw asyncpg and SQLAlchemy Core async on asyncpg,
each back to back and paced at 20 orders/s), and those deployments' CPU per order is read
against the SQLAlchemy-Core-async figure of the same kind of loop too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the script lives (``CLEAVE_BENCH_ORDER_FLOOR`` points elsewhere).
SCRIPT = Path(
    os.environ.get(
        "CLEAVE_BENCH_ORDER_FLOOR",
        Path(__file__).resolve().parents[2] / "shared" / "floors" / "order_floor.py",
    )
)
#: Orders per path and rounds (the median round is kept): the script's defaults for the full
#: run (about a minute here), a few for --quick.
FULL = (400, 5)
QUICK = (30, 3)
TIMEOUT = 300.0

#: The repository (``bench.pg_floor`` runs from here).
ROOT = Path(__file__).resolve().parents[1]
#: The PostgreSQL floor runs four paths of rounds, half of them paced at 20 orders/s.
PG_TIMEOUT = 600.0

PATHS = {
    "sqlite3_us": "stdlib sqlite3, prepared statements",
    "sqlalchemy_core_sync_us": "SQLAlchemy Core sync, statements built once",
    "sqlalchemy_core_async_us": "SQLAlchemy Core async on aiosqlite",
}
#: ``bench.pg_floor``'s paths: closed loop (orders back to back) and paced (20 orders/s).
PG_PATHS = {
    "asyncpg_closed_us": "asyncpg, prepared statements, closed loop",
    "asyncpg_paced_us": "asyncpg, prepared statements, paced at 20 orders/s",
    "sqlalchemy_core_async_closed_us": "SQLAlchemy Core async on asyncpg, closed loop",
    "sqlalchemy_core_async_paced_us": "SQLAlchemy Core async on asyncpg, paced at 20 orders/s",
}


@dataclass
class Floor:
    """CPU microseconds per order of each path, or why there are none."""

    us: dict[str, float]
    orders: int = 0
    rounds: int = 0
    missing: str | None = None
    #: What the script says about its run (its JSON line's ``meta``): counts, versions.
    meta: dict[str, Any] = field(default_factory=dict)

    def ms(self, key: str) -> float | None:
        """One path's figure in milliseconds per order, None if not measured."""
        value = self.us.get(key)
        return None if value is None else value / 1000

    @property
    def core_sync_ms(self) -> float | None:
        return self.ms("sqlalchemy_core_sync_us")


async def measure(*, quick: bool) -> Floor:
    """Run the SQLite floor script; its last line is one JSON object."""
    if not await asyncio.to_thread(SCRIPT.exists):
        return Floor({}, missing=f"{SCRIPT} not found")
    return await _run([sys.executable, str(SCRIPT)], SCRIPT.name, PATHS, quick=quick)


async def measure_postgresql(*, quick: bool) -> Floor:
    """Run ``bench.pg_floor`` (the same order on PostgreSQL) the same way; ``missing`` says
    why there are no figures (PostgreSQL does not answer, the script failed)."""
    return await _run(
        [sys.executable, "-m", "bench.pg_floor"],
        "bench.pg_floor",
        PG_PATHS,
        quick=quick,
        cwd=ROOT,
        time_limit=PG_TIMEOUT,
    )


async def _run(
    command: list[str],
    name: str,
    paths: Mapping[str, str],
    *,
    quick: bool,
    cwd: Path | None = None,
    time_limit: float = TIMEOUT,
) -> Floor:
    """Run a floor script in a process of its own, pinned to one core (``PEERS_CPU``), with
    ``PEERS_ORDERS`` and ``PEERS_ROUNDS``; read the figures of ``paths`` from its last line,
    one JSON object (or ``{"missing": reason}``)."""
    orders, rounds = QUICK if quick else FULL
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    environment = dict(
        os.environ, PEERS_ORDERS=str(orders), PEERS_ROUNDS=str(rounds), PEERS_CPU=str(cpu)
    )
    process = await asyncio.create_subprocess_exec(
        *command,
        env=environment,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), time_limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        return Floor({}, missing=f"{name} did not finish within {time_limit:.0f} s")
    lines = output.decode(errors="replace").strip().splitlines()
    try:
        found = json.loads(lines[-1])
        if isinstance(found, dict) and "missing" in found:
            return Floor({}, missing=str(found["missing"]))
        us = {key: float(found[key]) for key in paths}
    except (IndexError, ValueError, KeyError, TypeError):
        tail = "\n".join(lines[-5:])
        return Floor({}, missing=f"{name} exited with {process.returncode}: {tail}")
    meta = found.get("meta")
    return Floor(us, orders=orders, rounds=rounds, meta=meta if isinstance(meta, dict) else {})

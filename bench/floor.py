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
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

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

PATHS = {
    "sqlite3_us": "stdlib sqlite3, prepared statements",
    "sqlalchemy_core_sync_us": "SQLAlchemy Core sync, statements built once",
    "sqlalchemy_core_async_us": "SQLAlchemy Core async on aiosqlite",
}


@dataclass
class Floor:
    """CPU microseconds per order of each path, or why there are none."""

    us: dict[str, float]
    orders: int = 0
    rounds: int = 0
    missing: str | None = None

    @property
    def core_sync_ms(self) -> float | None:
        value = self.us.get("sqlalchemy_core_sync_us")
        return None if value is None else value / 1000


async def measure(*, quick: bool) -> Floor:
    """Run the script; its last line is one JSON object."""
    if not await asyncio.to_thread(SCRIPT.exists):
        return Floor({}, missing=f"{SCRIPT} not found")
    orders, rounds = QUICK if quick else FULL
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    environment = dict(
        os.environ, PEERS_ORDERS=str(orders), PEERS_ROUNDS=str(rounds), PEERS_CPU=str(cpu)
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return Floor({}, missing=f"{SCRIPT.name} did not finish within {TIMEOUT:.0f} s")
    lines = output.decode(errors="replace").strip().splitlines()
    try:
        found = json.loads(lines[-1])
        us = {key: float(found[key]) for key in PATHS}
    except (IndexError, ValueError, KeyError, TypeError):
        tail = "\n".join(lines[-5:])
        return Floor({}, missing=f"{SCRIPT.name} exited with {process.returncode}: {tail}")
    return Floor(us, orders=orders, rounds=rounds)

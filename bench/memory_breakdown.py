"""What the monolith's resident memory is made of: ``python -m bench.memory_breakdown``.

1. The monolith runs as ``cleave run`` on a fresh SQLite file (with the benchmark's settings,
   an admin ensured at start, the payment sandbox as a process of its own): its RSS idle,
   then after seeding and a short closed loop of orders (``--orders``).
2. The same start under ``python -X importtime`` names every module the monolith loads, in
   the order their imports finished (a module's own imports finish before it does).
3. A fresh interpreter imports those modules again in that order, reading its RSS after each:
   every module is charged what it adds on top of the modules it needs, and the charges are
   summed by top-level package (the standard library as one row, the project's packages each
   as a row). What the idle monolith holds beyond all its imports is its run-time state:
   the app and its routes, SQLAlchemy's tables and caches, connections, threads, allocator
   slack.
4. Each heavy library alone in a fresh interpreter: what importing it costs on top of bare
   Python (with the standard library it pulls in), and whether the monolith loads it at all,
   and through which of its modules.

RSS moves by whole pages and the allocator keeps some slack, so a package's row is good to
about half a MiB; the rows add up to the replay's total. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.deployment import (
    START_TIMEOUT,
    Deployment,
    _cleave,
    _environment,
    free_port,
    payment_provider,
)
from bench.load import closed_loop, seeded
from bench.report import Section
from bench.timing import load_average, machine

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("kernel", "adapters", "modules", "entrypoints")
STDLIB = "(standard library)"
#: Libraries whose cost alone is measured (step 4): the heavy ones, and the ones the
#: monolith on SQLite should not need (queues, PostgreSQL, test tools).
LIBRARIES = (
    "sqlalchemy",
    "aiosqlite",
    "litestar",
    "msgspec",
    "uvicorn",
    "aiohttp",
    "purgatory",
    "redis",
    "dramatiq",
    "pika",
    "asyncpg",
    "alembic",
    "zxcvbn",
    "argon2",
    "prometheus_client",
    "limits",
    "pydantic",
    "jwt",
    "httpx",
    "schemathesis",
    "hypothesis",
)
#: How long the idle monolith settles before its RSS is read (relays, first timers).
SETTLE_SECONDS = 3.0

#: Replays imports in a fresh interpreter. On stdin: the packages the monolith tried to import
#: and did not have (kept missing here too: a library may skip an optional dependency, or be
#: made to, see ``adapters.optional_imports``), then [group, [module, ...]] pairs. Prints
#: [group, RSS after its modules, modules that would not import] for each.
REPLAY = """
import importlib, json, os, sys
PAGE = os.sysconf('SC_PAGE_SIZE')
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE
absent, groups = json.load(sys.stdin)
for name in absent:
    sys.modules[name] = None
readings = [["(python)", rss(), 0]]
for group, names in groups:
    failed = 0
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except BaseException:
            failed += 1
    readings.append([group, rss(), failed])
json.dump(readings, sys.stdout)
"""

#: ``cleave`` itself, writing the names in sys.modules to the file named first when it exits.
LOADED_AT_EXIT = """
import atexit, json, signal, sys
path = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(path, "w")))
# uvicorn re-raises SIGTERM once it has shut down: exit through atexit, not the default.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
from entrypoints.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: One library alone: RSS of bare Python, then after importing it.
ALONE = """
import importlib, os, sys
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
before = rss()
importlib.import_module(sys.argv[1])
print(before, rss())
"""


@dataclass
class Run:
    """The monolith's RSS idle and after load, and what it imported (from importtime)."""

    idle: int
    #: Idle with no admin ensured at start: no password judged yet.
    idle_no_admin: int
    loaded: int | None
    orders: int
    #: Module names in the order their imports finished.
    modules: list[str]
    #: For each module, the chain of modules whose import brought it in.
    importers: dict[str, list[str]]
    #: Top-level packages it tried to import and did not load (missing, or kept out).
    absent: list[str]


# -- the monolith ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def monolith(
    directory: Path, provider: str, *, importtime: bool = False, admin: bool = True
) -> AsyncIterator[Deployment]:
    """``cleave run`` on a fresh SQLite file in ``directory``; ``admin``: with an admin
    account ensured at start (the benchmark's), which judges its password."""
    port = free_port()
    name = "importtime" if importtime else "shop" if admin else "no-admin"
    environment = _environment(None) | {
        "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / f'{name}.db'}",
        "CLEAVE_DATA_DIR": str(directory / f"{name}-data"),
        "CLEAVE_PAYMENT_PROVIDER_URL": provider,
    }
    if not admin:
        del environment["CLEAVE_ADMIN_EMAIL"], environment["CLEAVE_ADMIN_PASSWORD"]
    command = [_cleave(), "run", "--port", str(port)]
    if importtime:
        # importtime also lists imports that failed (optional dependencies tried and missing):
        # what was loaded is what sys.modules holds at exit.
        loaded = directory / "loaded.json"
        command = [
            *(sys.executable, "-X", "importtime", "-c", LOADED_AT_EXIT, str(loaded)),
            *command[1:],
        ]
        environment["PYTHONPATH"] = str(ROOT)
    log = directory / f"{name}.log"
    with log.open("wb") as output:
        child = await asyncio.create_subprocess_exec(
            *command, env=environment, cwd=directory, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            while True:
                if child.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the monolith did not start (log: {log})")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield Deployment("monolith", "sqlite", url, {"shop": psutil.Process(child.pid)}, [log])
    finally:
        if child.returncode is None:
            child.terminate()
            await asyncio.wait_for(child.wait(), timeout=20)


def importtime_order(log: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Module names in the order their imports finished, and who brought each in.

    ``-X importtime`` prints a line per module when its import finishes, indented by how
    deep in other imports it was: read backwards, each line's parents come before it."""
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    ]
    order = [line.rsplit("|", 1)[1].strip() for line in lines]
    importers: dict[str, list[str]] = {}
    stack: list[str] = []
    for line in reversed(lines):
        name = line.rsplit("|", 1)[1]
        depth = (len(name) - len(name.lstrip())) // 2
        stack = [*stack[:depth], name.strip()]
        importers.setdefault(name.strip(), stack[:-1])
    return order, importers


async def run_monolith(orders: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="cleave-memory-") as folder:
        directory = Path(folder)
        async with payment_provider(directory) as provider:
            async with monolith(directory, provider, importtime=True) as probed:
                await asyncio.sleep(SETTLE_SECONDS)
            modules, importers = importtime_order(probed.logs[0])
            loaded_at_exit = set(json.loads((directory / "loaded.json").read_text()))
            tops = {name.split(".")[0] for name in loaded_at_exit}
            absent = sorted({name.split(".")[0] for name in modules} - tops)
            modules = [name for name in modules if name in loaded_at_exit]
            async with monolith(directory, provider, admin=False) as bare:
                await asyncio.sleep(SETTLE_SECONDS)
                no_admin = bare.rss()
            async with monolith(directory, provider) as shop:
                await asyncio.sleep(SETTLE_SECONDS)
                idle = shop.rss()
                loaded = None
                if orders:
                    async with seeded(shop) as customers:
                        await closed_loop(
                            customers,
                            shop,
                            orders=orders,
                            concurrency=16,
                            time_limit=120,
                            poll=0.005,
                        )
                    await asyncio.sleep(SETTLE_SECONDS)
                    loaded = shop.rss()
    return Run(idle, no_admin, loaded, orders, modules, importers, absent)


# -- the attribution ------------------------------------------------------------------------


def group_of(module: str) -> str:
    top = module.split(".")[0]
    if top in PROJECT:
        return f"cleave: {top}"
    if top in sys.stdlib_module_names or top.startswith("_") or top == "encodings":
        return STDLIB
    return top


def package_order(modules: Sequence[str], importers: dict[str, list[str]]) -> list[str]:
    """Groups in an order where each comes after the groups it imports (the standard library
    first): a package's ``__init__`` finishes last, so module order alone would charge a
    package for everything its ``__init__`` pulls in."""
    needs: dict[str, set[str]] = {}
    for module in modules:
        group = group_of(module)
        needs.setdefault(group, set())
        chain = importers.get(module, [])
        if chain and group_of(chain[-1]) != group:
            needs.setdefault(group_of(chain[-1]), set()).add(group)
    order: list[str] = []
    visiting: set[str] = set()

    def visit(group: str) -> None:
        if group in order or group in visiting:  # a cycle: whoever came first goes first
            return
        visiting.add(group)
        for needed in sorted(needs.get(group, ())):
            visit(needed)
        visiting.discard(group)
        order.append(group)

    visit(STDLIB)
    for group in needs:
        visit(group)
    return order


def replay(
    modules: Sequence[str], importers: dict[str, list[str]], absent: Sequence[str]
) -> tuple[int, Counter[str], int]:
    """(bare Python's RSS, bytes added by each group, modules that would not import alone)."""
    wanted = [name for name in modules if name not in ("__main__", "__mp_main__")]
    by_group: dict[str, list[str]] = {}
    for name in wanted:
        by_group.setdefault(group_of(name), []).append(name)
    plan = [[group, by_group[group]] for group in package_order(wanted, importers)]
    answer = subprocess.run(
        [sys.executable, "-c", REPLAY],
        input=json.dumps([list(absent), plan]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=True,
    )
    readings = json.loads(answer.stdout)
    base = last = readings[0][1]
    added: Counter[str] = Counter()
    failed = 0
    for group, size, missing in readings[1:]:
        added[group] += size - last
        failed += missing
        last = size
    return base, added, failed


def alone(library: str) -> int | None:
    """Bytes ``import library`` adds to bare Python, or None if it is not installed."""
    answer = subprocess.run(
        [sys.executable, "-c", ALONE, library], capture_output=True, text=True, cwd=ROOT
    )
    if answer.returncode:
        return None
    before, after = map(int, answer.stdout.split())
    return after - before


def _mib(size: float) -> str:
    return f"{size / MIB:.1f}"


def report(run: Run) -> list[Section]:
    base, added, failed = replay(run.modules, run.importers, run.absent)
    imported = base + sum(added.values())
    head = Section(
        title="Memory of the monolith (cleave run, SQLite): where the RSS goes",
        headers=["what", "MiB", "share of idle RSS"],
    )
    head.rows.append(["bare Python", _mib(base), f"{base / run.idle:.0%}"])
    for group, size in added.most_common():
        if size >= 0.2 * MIB:
            head.rows.append([group, _mib(size), f"{size / run.idle:.0%}"])
    small = sum(size for size in added.values() if size < 0.2 * MIB)
    head.rows.append(["other packages (< 0.2 MiB each)", _mib(small), f"{small / run.idle:.0%}"])
    state = run.idle - imported
    head.rows.append(["run-time state (beyond imports)", _mib(state), f"{state / run.idle:.0%}"])
    head.rows.append(["**idle RSS**", _mib(run.idle), "100%"])
    head.rows.append(["idle RSS, no admin ensured at start", _mib(run.idle_no_admin), ""])
    if run.loaded is not None:
        head.rows.append([f"RSS after seeding and {run.orders} orders", _mib(run.loaded), ""])
    head.metrics.update(
        {
            "memory_idle_mib": round(run.idle / MIB, 1),
            "memory_idle_no_admin_mib": round(run.idle_no_admin / MIB, 1),
            "memory_after_load_mib": None if run.loaded is None else round(run.loaded / MIB, 1),
            "memory_imports_mib": round(imported / MIB, 1),
            "memory_state_mib": round(state / MIB, 1),
            **{
                f"memory_package_{group.replace('cleave: ', 'cleave_')}_mib": round(size / MIB, 2)
                for group, size in added.items()
                if size >= 0.2 * MIB and not group.startswith("(")
            },
        }
    )
    head.notes.append(
        f"{len(run.modules)} modules imported by the monolith, replayed in a fresh interpreter "
        f"in the order their imports finished ({failed} would not import on their own: "
        "migration scripts and the like); each package is charged what its modules added."
    )
    libraries = Section(
        title="Heavy libraries: cost of importing each alone, and whether the monolith does",
        headers=["library", "MiB alone", "loaded by cleave run", "first brought in by"],
    )
    loaded = {name.split(".")[0] for name in run.modules}
    for library in LIBRARIES:
        size = alone(library)
        if size is None:
            continue
        chain = run.importers.get(library, [])
        origin = next((name for name in reversed(chain) if group_of(name) != library), "")
        libraries.rows.append(
            [library, _mib(size), "yes" if library in loaded else "no", origin or "-"]
        )
        libraries.metrics[f"memory_alone_{library}_mib"] = round(size / MIB, 1)
    libraries.notes.append(
        "Alone: on top of bare Python, with the standard library it pulls in; libraries share "
        "much of that, so these do not add up. The first table charges each module once."
    )
    return [head, libraries]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_breakdown", description=__doc__)
    parser.add_argument(
        "--orders", type=int, default=300, help="orders of the short load (0: idle only)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    about = machine() | {"load": load_average()}
    begun = time.monotonic()
    run = asyncio.run(run_monolith(arguments.orders))
    sections = report(run)
    summary: dict[str, object] = {}
    for section in sections:
        print(section.text(), flush=True)
        summary.update(section.metrics)
    summary.update(seconds=round(time.monotonic() - begun, 1), machine=about)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

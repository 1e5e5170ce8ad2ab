"""Starting a deployment of the shop as real processes, and measuring their CPU and memory.

A deployment is the set of processes that serve the shop's API at one base URL: a topology
of ``topologies/`` started by ``entrypoints.up.Deployment``, the code behind ``cleave up``
(the monolith: one ``cleave serve`` process hosting every module; split-http: a gateway and
one process per module; mixed: three processes). The sandbox payment provider, which stands
in for the outside card processor, runs as a process of its own beside any deployment and
is not counted in it. Everything that drives and measures a deployment works on its list of
processes, by service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import psutil

from entrypoints.topology import Topology, module_variable
from entrypoints.up import free_port, free_ports

DatabaseKind = Literal["sqlite", "postgresql"]
TopologyName = Literal["monolith", "split-http", "mixed", "split-redis"]
TOPOLOGIES_DIR = Path(__file__).resolve().parents[1] / "topologies"

#: The PostgreSQL the benchmarks use when asked to; each run gets a fresh schema in it.
POSTGRES_URL = os.environ.get(
    "CLEAVE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLEAVE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password-1"
#: How long a process may take to answer /health/ready.
START_TIMEOUT = 60.0

#: What each topology still needs before it can be measured.
MISSING: dict[str, str] = {}


class NotAvailable(Exception):
    """This deployment cannot be started here (yet); the message says why."""


@dataclass
class Deployment:
    """Running processes serving the shop at ``base_url``, named by service."""

    topology: TopologyName
    database: DatabaseKind
    base_url: str
    processes: dict[str, psutil.Process]
    logs: list[Path] = field(default_factory=list)
    #: The base URL of every process that serves HTTP (its ``/metrics``, where its SQL is
    #: counted); a process without one is not counted.
    urls: list[str] = field(default_factory=list)

    def tree(self) -> list[psutil.Process]:
        """Every process of the deployment, children included."""
        found: dict[int, psutil.Process] = {}
        for process in self.processes.values():
            with contextlib.suppress(psutil.Error):
                found[process.pid] = process
                for child in process.children(recursive=True):
                    found[child.pid] = child
        return list(found.values())

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by every process of the deployment."""
        return sum(self.cpu_seconds_by_service().values())

    def cpu_seconds_by_service(self) -> dict[str, float]:
        """User + system CPU seconds used so far by each service (its process and its
        children)."""
        spent: dict[str, float] = {}
        for name, process in self.processes.items():
            total = 0.0
            with contextlib.suppress(psutil.Error):
                for each in (process, *process.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        times = each.cpu_times()
                        total += times.user + times.system
            spent[name] = total
        return spent

    def rss_by_service(self) -> dict[str, int]:
        """Resident memory in bytes of each service (its process and its children)."""
        sizes: dict[str, int] = {}
        for name, process in self.processes.items():
            total = 0
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
            sizes[name] = total
        return sizes

    def rss(self) -> int:
        """Resident memory in bytes of the whole deployment."""
        return sum(self.rss_by_service().values())


async def postgres_available() -> str | None:
    """None when the benchmark PostgreSQL answers; otherwise why not."""
    import asyncpg

    url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_URL} does not answer ({type(error).__name__})"
    await connection.close()
    return None


async def drop_schema(schema: str) -> None:
    """Drop a schema the benchmarks made, with everything in it."""
    import asyncpg

    url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def _cleave() -> str:
    """The ``cleave`` command of the interpreter running the benchmarks."""
    beside = Path(sys.executable).with_name("cleave")
    return str(beside) if beside.exists() else (shutil.which("cleave") or "cleave")


def _environment(schema: str | None) -> dict[str, str]:
    """The settings every process of a benchmark deployment gets: this environment without
    anything that would point it at another deployment's state, plus quiet logs, a cheap
    password hash and no rate limit on the benchmark's own logins."""
    from entrypoints.bootstrap import SHOP_PACKAGES

    ignored = _INHERITED_NOT | {
        module_variable(module, suffix)
        for module in SHOP_PACKAGES
        for suffix in ("URL", "DATABASE_URL")
    }
    environment = {name: value for name, value in os.environ.items() if name not in ignored}
    environment.update(
        CLEAVE_HOST="127.0.0.1",
        CLEAVE_ADMIN_EMAIL=ADMIN_EMAIL,
        CLEAVE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CLEAVE_PASSWORD_HASH_COST="low",
        CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE="1000000",
        # Closed-loop customers order far faster than a person.
        CLEAVE_MAX_OPEN_ORDERS="1000000",
        CLEAVE_ORDERS_PER_MINUTE="1000000",
        CLEAVE_JWT_SECRET=secrets.token_hex(32),
        CLEAVE_SERVICE_KEY=secrets.token_hex(32),
        # SQL statements and transactions per order, read from /metrics (bench.statements).
        CLEAVE_BENCH_COUNT_SQL=os.environ.get("CLEAVE_BENCH_COUNT_SQL", "1"),
        # Per-request access logs would measure the logger, not the shop.
        CLEAVE_LOG_LEVEL=os.environ.get("CLEAVE_BENCH_LOG_LEVEL", "WARNING"),
        CLEAVE_SHUTDOWN_GRACE_SECONDS="5",
        # Its own keys and queues on a shared Redis, removed afterwards (_forget_queues).
        CLEAVE_QUEUE_NAMESPACE=f"bench{secrets.token_hex(5)}",
    )
    if schema is not None:
        environment["CLEAVE_DATABASE_SCHEMA"] = schema
    return environment


#: Inherited settings a benchmark deployment must not see (it gets its own).
_INHERITED_NOT = frozenset(
    {
        "CLEAVE_DATABASE_URL",
        "CLEAVE_DATABASE_SCHEMA",
        "CLEAVE_DATA_DIR",
        "CLEAVE_PORT",
        "CLEAVE_TOPOLOGY",
        "CLEAVE_SERVICE",
        "CLEAVE_PAYMENT_PROVIDER_URL",
    }
)


async def _wait_ready(
    base_url: str, process: asyncio.subprocess.Process, log: Path, path: str = "/health/ready"
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                tail = (await asyncio.to_thread(log.read_bytes))[-2000:].decode(errors="replace")
                raise NotAvailable(f"the server exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise NotAvailable(f"the server was not ready within {START_TIMEOUT:.0f} s (log: {log})")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _spawn(
    arguments: list[str], environment: dict[str, str], log: Path, directory: Path
) -> asyncio.subprocess.Process:
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            _cleave(),
            *arguments,
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            cwd=directory,
        )


@contextlib.asynccontextmanager
async def payment_provider(directory: Path) -> AsyncIterator[str]:
    """The sandbox payment provider as a process of its own; yields its URL.

    It stands in for the outside card processor, so it runs outside every deployment: what a
    deployment is charged for (CPU, memory) is the shop's own work. (``cleave run`` without
    a provider URL would start the sandbox in a thread of the monolith, and its ledger of
    charges would count as the monolith's memory.)
    """
    port = free_port()
    log = directory / "payment-provider.log"
    environment = dict(os.environ, CLEAVE_LOG_LEVEL="WARNING")
    process = await _spawn(["sandbox-provider", "--port", str(port)], environment, log, directory)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, process, log, path="/v1/stats")
        yield url
    finally:
        await _stop(process)
        _keep(log)


def _topology_environment(
    topology: Topology, data_dir: Path, base: dict[str, str], url: str | None
) -> dict[str, str]:
    """``base`` plus the database of every hosted module: ``url`` for all of them
    (PostgreSQL), or else a SQLite file per service that names one (the monolith's shared
    file would land in the repository: it goes to the workspace) and, for the rest, the
    topology's default, a file per module in ``CLEAVE_DATA_DIR``."""
    environment = dict(base)
    for service in topology.services:
        for module in service.modules:
            variable = module_variable(module, "DATABASE_URL")
            if url is not None:
                environment[variable] = url
            elif service.database and service.database.startswith("sqlite"):
                environment[variable] = f"sqlite+aiosqlite:///{data_dir / f'{service.name}.db'}"
            else:
                environment.pop(variable, None)
    return environment


def _ports(topology: Topology) -> dict[str, int]:
    """A free base port per service (consecutive free ports for one with instances)."""
    return {service.name: free_ports(service.instances) for service in topology.services}


async def _create_schema(schema: str) -> None:
    """Create the run's schema before the processes start: several processes creating it at
    once would race (``CREATE SCHEMA IF NOT EXISTS`` is not safe against that)."""
    import asyncpg

    url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def start(topology: TopologyName, database: DatabaseKind) -> AsyncIterator[Deployment]:
    """Start ``topology`` (``topologies/<name>.toml``) on a fresh ``database``, exactly as
    ``cleave up`` does (``entrypoints.up.Deployment``: one ``cleave serve`` process per
    service, free ports, their own data directory), paying through a sandbox provider process
    of its own; ``NotAvailable`` if it cannot run here (yet).

    SQLite: a file per service that names one (the monolith), else a file per module.
    PostgreSQL: every module's ``CLEAVE_<MODULE>_DATABASE_URL`` is the benchmark database and
    ``CLEAVE_DATABASE_SCHEMA`` a fresh schema, dropped afterwards (module tables carry the
    module's name, so the services' tables never meet; each process has its own pool).
    """
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.topology import load_topology
    from entrypoints.up import Deployment as Processes

    if topology in MISSING:
        raise NotAvailable(MISSING[topology])
    path = TOPOLOGIES_DIR / f"{topology}.toml"
    with _workspace() as directory:
        schema: str | None = None
        url: str | None = None
        if database == "postgresql":
            reason = await postgres_available()
            if reason is not None:
                raise NotAvailable(reason)
            url, schema = POSTGRES_URL, f"bench_{secrets.token_hex(6)}"
            await _create_schema(schema)
        try:
            async with payment_provider(directory) as provider:
                data_dir = directory / "data"
                base = _environment(schema)
                base["CLEAVE_PAYMENT_PROVIDER_URL"] = provider
                base["CLEAVE_DATA_DIR"] = str(data_dir)
                plan = load_topology(path, list(SHOP_PACKAGES), base)
                environment = _topology_environment(plan, data_dir, base, url)
                processes = Processes(
                    plan,
                    path,
                    environ=environment,
                    data_dir=data_dir,
                    ports=_ports(plan),
                    say=lambda line: None,
                    start_timeout=START_TIMEOUT,
                )
                # On this thread, not a worker thread: each child gets the parent-death
                # signal of the thread that starts it. Nothing else runs while they start.
                try:
                    processes.start()
                except Exception as error:
                    raise NotAvailable(f"{topology} did not start: {error}") from error
                try:
                    yield Deployment(
                        topology=topology,
                        database=database,
                        base_url=processes.gateway_url,
                        processes={
                            child.label: psutil.Process(child.pid)
                            for child in processes.children
                            if child.pid is not None
                        },
                        logs=[child.log for child in processes.children],
                        urls=[child.url for child in processes.children if child.url],
                    )
                finally:
                    processes.stop(grace=15)
                    _forget_queues(environment)
                    for child in processes.children:
                        _keep(child.log, prefix=topology)
        finally:
            if schema is not None:
                await drop_schema(schema)


def _keep(log: Path, prefix: str = "") -> None:
    """Copy a server log to ``bench/out/`` when CLEAVE_BENCH_KEEP_LOGS is set (for debugging)."""
    if os.environ.get("CLEAVE_BENCH_KEEP_LOGS") and log.exists():
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        name = f"{prefix}-{log.name}" if prefix else log.name
        shutil.copy(log, out / f"{time.strftime('%H%M%S')}-{name}")


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cleave-bench-") as directory:
        yield Path(directory)


def _forget_queues(environment: dict[str, str]) -> None:
    """Delete what a deployment left on Redis under its namespace (nothing for HTTP)."""
    import redis

    namespace = environment.get("CLEAVE_QUEUE_NAMESPACE")
    if not namespace:
        return
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(environment.get("CLEAVE_REDIS_URL", REDIS_URL))
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

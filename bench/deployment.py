"""Starting a deployment of the shop as real processes, and measuring their CPU and memory.

A deployment is the set of processes that serve the shop's API at one base URL. Today only
the monolith exists (``cleave run``: every module in one process). The sandbox payment
provider, which stands in for the outside card processor, runs as a process of its own
beside any deployment and is not counted in it. The split topologies plug in here as
further ``start_*`` functions that return a ``Deployment`` with one process per service;
everything that drives and measures a deployment already works on a list of processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import psutil

DatabaseKind = Literal["sqlite", "postgresql"]
TopologyName = Literal["monolith", "split-http", "split-redis"]

#: The PostgreSQL the benchmarks use when asked to; each run gets a fresh schema in it.
POSTGRES_URL = os.environ.get(
    "CLEAVE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password-1"
#: How long a process may take to answer /health/ready.
START_TIMEOUT = 60.0

#: What each topology still needs before it can be measured.
MISSING = {
    "split-http": "needs the HTTP transport",
    "split-redis": "needs the Redis transport",
}


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
        total = 0.0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


async def _drop_schema(schema: str) -> None:
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


def _environment(port: int, database_url: str, schema: str | None) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        CLEAVE_PORT=str(port),
        CLEAVE_HOST="127.0.0.1",
        CLEAVE_DATABASE_URL=database_url,
        CLEAVE_ADMIN_EMAIL=ADMIN_EMAIL,
        CLEAVE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CLEAVE_PASSWORD_HASH_COST="low",
        CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE="1000000",
        CLEAVE_JWT_SECRET=secrets.token_hex(32),
        # Per-request access logs would measure the logger, not the shop.
        CLEAVE_LOG_LEVEL=os.environ.get("CLEAVE_BENCH_LOG_LEVEL", "WARNING"),
        CLEAVE_SHUTDOWN_GRACE_SECONDS="5",
    )
    environment.pop("CLEAVE_DATABASE_SCHEMA", None)
    if schema is not None:
        environment["CLEAVE_DATABASE_SCHEMA"] = schema
    return environment


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


@contextlib.asynccontextmanager
async def monolith(database: DatabaseKind) -> AsyncIterator[Deployment]:
    """``cleave run`` on a fresh database (a temporary SQLite file or PostgreSQL schema),
    paying through a sandbox provider process of its own."""
    with _workspace() as directory:
        schema: str | None = None
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{directory / 'shop.db'}"
        else:
            reason = await postgres_available()
            if reason is not None:
                raise NotAvailable(reason)
            url, schema = POSTGRES_URL, f"bench_{secrets.token_hex(6)}"
        async with payment_provider(directory) as provider:
            port = free_port()
            log = directory / "monolith.log"
            environment = _environment(port, url, schema)
            environment["CLEAVE_PAYMENT_PROVIDER_URL"] = provider
            process = await _spawn(["run"], environment, log, directory)
            try:
                base_url = f"http://127.0.0.1:{port}"
                await _wait_ready(base_url, process, log)
                yield Deployment(
                    topology="monolith",
                    database=database,
                    base_url=base_url,
                    processes={"monolith": psutil.Process(process.pid)},
                    logs=[log],
                )
            finally:
                await _stop(process)
                _keep(log)
                if schema is not None:
                    await _drop_schema(schema)


@contextlib.asynccontextmanager
async def start(topology: TopologyName, database: DatabaseKind) -> AsyncIterator[Deployment]:
    """Start ``topology`` on ``database``; ``NotAvailable`` if it cannot run here yet."""
    if topology != "monolith":
        raise NotAvailable(MISSING[topology])
    async with monolith(database) as deployment:
        yield deployment


def _keep(log: Path) -> None:
    """Copy a server log to ``bench/out/`` when CLEAVE_BENCH_KEEP_LOGS is set (for debugging)."""
    if os.environ.get("CLEAVE_BENCH_KEEP_LOGS"):
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        shutil.copy(log, out / f"{time.strftime('%H%M%S')}-{log.name}")


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cleave-bench-") as directory:
        yield Path(directory)

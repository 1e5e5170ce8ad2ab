"""``cleave worker``: one service of a topology as dramatiq worker processes.

The service's modules run exactly as in an HTTP service (``RunningProcess``: their databases,
relays and timers, and clients for the modules they call), inside dramatiq workers that take
their messages from the modules' queues. Process management is dramatiq's own command
(``dramatiq.cli.main``): ``--processes`` worker processes of ``--threads`` threads each, a
graceful stop on SIGTERM (messages in flight finish, prefetched ones go back to the queue),
and the whole group stopping when one process dies. Each worker process builds its broker in
``setup``, which dramatiq imports, from ``CLEAVE_TOPOLOGY`` and ``CLEAVE_SERVICE``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from entrypoints.settings import Settings, settings_from_environment
from entrypoints.topology import Service, Topology
from kernel.errors import ConfigurationError
from kernel.receiver import Receiver

TOPOLOGY_VARIABLE = "CLEAVE_TOPOLOGY"
SERVICE_VARIABLE = "CLEAVE_SERVICE"
#: Where a worker serves its health probes (``--port``, default the topology's port).
HEALTH_PORT_VARIABLE = "CLEAVE_WORKER_PORT"
HEALTH_HOST_VARIABLE = "CLEAVE_WORKER_HOST"
_PR_SET_PDEATHSIG = 1


class HostedProcess:
    """A ``RunningProcess`` as the worker's hosted runtime."""

    def __init__(self, process: Any) -> None:
        self.process = process

    async def start(self) -> Receiver:
        await self.process.start()
        receiver: Receiver = self.process.receivers["application/json"]
        return receiver

    async def stop(self) -> None:
        await self.process.stop()

    async def checks(self) -> dict[str, bool]:
        runtime = self.process.runtime
        checks = {"runtime": runtime is not None and runtime.started}
        for database in {id(db): db for db in self.process.databases.values()}.values():
            checks[f"database {database.display_url}"] = await database.ping()
        return checks


def check_worker(
    topology: Topology,
    service: Service,
    processes: int,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse what cannot run as a worker, with what to do instead."""
    if service.public or service.transport != "redis":
        raise ConfigurationError(
            f"service {service.name!r} is reached over {service.transport}"
            f"{' and serves the public API' if service.public else ''}: run it with "
            f"cleave serve {service.name} --topology {topology.source}"
        )
    if processes > 1:
        sqlite = [
            module
            for module in service.modules
            if not topology.database_url(module, environ).startswith("postgres")
        ]
        if sqlite:
            raise ConfigurationError(
                f"{processes} worker processes cannot share the SQLite file of "
                f"{', '.join(sqlite)}: give each a PostgreSQL database "
                "(CLEAVE_<MODULE>_DATABASE_URL), or run --processes 1 with more --threads"
            )


def run_worker(
    topology_path: str,
    service_name: str,
    settings: Settings,
    *,
    processes: int = 1,
    threads: int = 8,
    port: int | None = None,
    host: str | None = None,
) -> int:
    """Run the workers of one service until SIGTERM/SIGINT; dramatiq's exit status."""
    from adapters.bus.redis.config import QueueConfig
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.topology import load_topology

    topology = load_topology(topology_path, list(SHOP_PACKAGES))
    service = topology.service(service_name)
    check_worker(topology, service, processes)
    refusals = settings.refusals(split=True, strict=True)
    if refusals:
        raise ConfigurationError(
            "cleave worker runs a service as in production and refuses:\n  " + "\n  ".join(refusals)
        )
    config = QueueConfig.from_settings(settings)
    os.environ[TOPOLOGY_VARIABLE] = str(Path(topology_path).resolve())
    os.environ[SERVICE_VARIABLE] = service.name
    health_port = port or service.port
    if health_port:
        os.environ[HEALTH_PORT_VARIABLE] = str(health_port)
        os.environ[HEALTH_HOST_VARIABLE] = host or service.host
    else:
        os.environ.pop(HEALTH_PORT_VARIABLE, None)

    import dramatiq.cli

    arguments = dramatiq.cli.make_argument_parser().parse_args(
        [
            f"{__name__}:setup",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            *[config.queue(module) for module in service.modules],
            # In-flight messages get the grace period, then the process exits; what is
            # unacked goes back to the queue when dramatiq notices the dead worker.
            "--worker-shutdown-timeout",
            str(int(settings.shutdown_grace_seconds * 1000)),
            # The cleave command configured logging already; dramatiq would add a second
            # handler in each worker process.
            "--skip-logging",
        ]
    )
    status: int = dramatiq.cli.main(arguments)
    return status


def setup() -> None:
    """Build this worker process's broker (dramatiq calls it in each worker process)."""
    import dramatiq

    from adapters.bus.redis.config import QueueConfig
    from adapters.bus.redis.worker import worker_broker
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.process import RunningProcess, service_plan
    from entrypoints.topology import load_topology

    _die_with_parent()
    settings = settings_from_environment()
    topology = load_topology(os.environ[TOPOLOGY_VARIABLE], list(SHOP_PACKAGES))
    service = topology.service(os.environ[SERVICE_VARIABLE])
    process = RunningProcess(service_plan(topology, service), settings)
    port = os.environ.get(HEALTH_PORT_VARIABLE)
    health = (os.environ.get(HEALTH_HOST_VARIABLE, service.host), int(port)) if port else None
    broker, _ = worker_broker(
        QueueConfig.from_settings(settings),
        HostedProcess(process),
        service.modules,
        health=health,
        metrics=_metrics_of(process),
        instance=settings.instance,
    )
    dramatiq.set_broker(broker)


def _metrics_of(process: Any) -> Callable[[], Awaitable[bytes]]:
    """The same ``cleave_*`` metrics a service's ``/metrics`` shows, for this worker process."""
    from adapters.http.metrics import process_metrics
    from adapters.observability.messages import OBSERVER

    OBSERVER.wire = "redis"
    return process_metrics(lambda: process.runtime)


def _die_with_parent() -> None:
    """A worker process goes when the ``cleave worker`` that started it goes, however it
    goes: killed (kill -9, OOM), its workers would otherwise run on, unsupervised, holding
    their SQLite files. SIGKILL, as the parent's death was: what the workers held unacked
    goes back to the queue, and relays send again what they never heard about."""
    if sys.platform != "linux":
        return
    parent = os.getppid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGKILL)

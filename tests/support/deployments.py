"""Deployments of the shop as real processes, started by the same code as ``cleave up``.

Each test deployment gets free ports, its own data directory (SQLite files, logs) and its
own sandbox payment provider, and is stopped (every process) when the test is done.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.topology import Topology, load_topology, module_variable
from entrypoints.up import ROOT, Deployment

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-42"

#: Settings of every process of a test deployment: fast, quiet, nothing faked.
TEST_ENVIRONMENT = {
    "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
    "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "CLEAVE_PASSWORD_HASH_COST": "low",
    "CLEAVE_DELIVERY_BACKOFF_SECONDS": "0.05",
    "CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE": "100000",
    "CLEAVE_LOG_LEVEL": "WARNING",
    "CLEAVE_PAYMENT_TIMEOUT_SECONDS": "1",
    "CLEAVE_PAYMENT_ATTEMPTS": "2",
    "CLEAVE_SHUTDOWN_GRACE_SECONDS": "3",
    "CLEAVE_REMOTE_BREAKER_COOLDOWN_SECONDS": "1",
}


def topology_file(name: str) -> Path:
    return ROOT / "topologies" / f"{name}.toml"


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (for the instances of a service)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count >= 65535:
            continue
        if all(_free(first + offset) for offset in range(1, count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def deployed(
    name: str,
    directory: Path,
    environment: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Iterator[Deployment]:
    """Topology ``name`` (``topologies/<name>.toml``, or the file at ``path``) running on
    this machine."""
    path = path or topology_file(name)
    environ = {**os.environ, **TEST_ENVIRONMENT, **(environment or {})}
    topology: Topology = load_topology(path, list(SHOP_PACKAGES), environ)
    data_dir = directory / name
    for service in topology.services:
        if service.database and service.database.startswith("sqlite"):
            # The topology's shared file would land in the repository: keep it in the test's.
            for module in service.modules:
                environ.setdefault(
                    module_variable(module, "DATABASE_URL"),
                    f"sqlite+aiosqlite:///{data_dir / f'{service.name}.db'}",
                )
    ports = {service.name: free_ports(service.instances) for service in topology.services}
    deployment = Deployment(
        topology, path, environ=environ, data_dir=data_dir, ports=ports, say=lambda line: None
    )
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop(grace=10)

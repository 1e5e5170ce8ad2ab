"""Deployments of the shop as real processes, started by the same code as ``cleave up``.

Each test deployment gets free ports, its own data directory (SQLite files, logs) and its
own sandbox payment provider, and is stopped (every process) when the test is done.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import redis

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.topology import Topology, load_topology, module_variable
from entrypoints.up import ROOT, Deployment, free_ports
from tests.support.services import RABBITMQ_URL, REDIS_URL, require

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-42"

#: Settings of every process of a test deployment: fast, quiet, nothing faked.
TEST_ENVIRONMENT = {
    "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
    "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "CLEAVE_PASSWORD_HASH_COST": "low",
    "CLEAVE_DELIVERY_BACKOFF_SECONDS": "0.05",
    "CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE": "100000",
    # Load tests place hundreds of orders for one customer in seconds.
    "CLEAVE_MAX_OPEN_ORDERS": "100000",
    "CLEAVE_ORDERS_PER_MINUTE": "100000",
    "CLEAVE_LOG_LEVEL": "WARNING",
    "CLEAVE_PAYMENT_TIMEOUT_SECONDS": "1",
    "CLEAVE_PAYMENT_ATTEMPTS": "2",
    "CLEAVE_SHUTDOWN_GRACE_SECONDS": "3",
    "CLEAVE_REMOTE_BREAKER_COOLDOWN_SECONDS": "1",
}


def topology_file(name: str) -> Path:
    return ROOT / "topologies" / f"{name}.toml"


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
    queues = any(service.transport == "redis" for service in topology.services)
    if queues:
        # Its own keys and queues on the shared broker, removed afterwards.
        require("Redis", REDIS_URL, 6379, "CLEAVE_TEST_REDIS_URL")  # replies, with either
        environ.setdefault("CLEAVE_REDIS_URL", REDIS_URL)
        environ.setdefault("CLEAVE_QUEUE_NAMESPACE", f"t{uuid.uuid4().hex[:10]}")
        if environ.get("CLEAVE_BROKER") == "rabbitmq":
            require("RabbitMQ", RABBITMQ_URL, 5672, "CLEAVE_TEST_RABBITMQ_URL")
            environ.setdefault("CLEAVE_RABBITMQ_URL", RABBITMQ_URL)
    deployment = Deployment(
        topology, path, environ=environ, data_dir=data_dir, ports=ports, say=lambda line: None
    )
    try:
        deployment.start()
        try:
            yield deployment
        finally:
            deployment.stop(grace=10)
    finally:
        if queues:
            forget(environ)


def logged_errors(deployment: Deployment, most: int = 30) -> str:
    """The error lines its processes logged (and each traceback's last line), for a failing
    assertion to show what went wrong behind the answers it compared."""
    found: list[str] = []
    for child in [*deployment.children, *([deployment.sandbox] if deployment.sandbox else [])]:
        for line in child.tail(200_000).splitlines():
            if _ERROR_LINE.search(line):
                found.append(f"{child.label}: {line[:300]}")
    if not found:
        return "(no process logged an error)"
    return "errors the processes logged:\n" + "\n".join(found[-most:])


_ERROR_LINE = re.compile(r"\[(error|critical) |^(ERROR|CRITICAL)|^\w+(\.\w+)*(Error|Exception): ")


def forget(environ: Mapping[str, str]) -> None:
    """Remove what a test deployment left on the brokers."""
    from adapters.bus.redis.config import QueueConfig

    namespace = environ["CLEAVE_QUEUE_NAMESPACE"]
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(environ["CLEAVE_REDIS_URL"])
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    if environ.get("CLEAVE_BROKER") == "rabbitmq":
        import pika

        config = QueueConfig(broker="rabbitmq", namespace=namespace)
        connection = pika.BlockingConnection(pika.URLParameters(environ["CLEAVE_RABBITMQ_URL"]))
        channel = connection.channel()
        for module in SHOP_PACKAGES:
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(config.queue(module) + suffix)
        connection.close()


def dead_letters(deployment: Deployment) -> list[Any]:
    """What ``cleave dead-letters list --topology`` shows for a deployment: every module's
    database and the broker's dead letters."""
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "entrypoints.cli",
            "dead-letters",
            "list",
            "--json",
            "--topology",
            deployment.topology_path,
        ],
        cwd=ROOT,
        env=deployment.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    return [msgspec.json.decode(line) for line in listing.stdout.splitlines() if line.strip()]

"""Real services the tests use, found through URLs from the environment.

Without the service a test skips with the reason on a laptop, and fails under ``CI=true``,
where every service must be up.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

POSTGRES_URL = os.environ.get(
    "CLEAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLEAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("CLEAVE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(name: str, url: str, default_port: int, variable: str) -> None:
    """Skip (or fail under CI=true) when ``name`` does not answer at ``url``."""
    if reachable(url, default_port):
        return
    message = f"{name} does not answer at {url} (set {variable} to point at one)"
    if CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def require_postgres() -> str:
    require("PostgreSQL", POSTGRES_URL, 5432, "CLEAVE_TEST_POSTGRES_URL")
    return POSTGRES_URL

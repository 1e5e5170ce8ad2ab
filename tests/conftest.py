"""Fixtures shared by every test: the transports, the databases, the event loop backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina.instrumentation

from tests.support.harness import SyncDriver
from tests.support.services import require_postgres

# Retries of the payment adapter are logged through logging, as in the app.
stamina.instrumentation.set_on_retry_hooks([stamina.instrumentation.LoggingOnRetryHook])

#: Every module test runs over each of these; a topology must not change a result.
TRANSPORTS = ["inprocess", "loopback", "http"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the soak runs out unless ``-m`` names them: the default run stays under ten
    minutes on two cores, and ``.ci/run`` runs ``-m soak`` after it."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The transport between modules: direct calls, or everything through the wire codec."""
    return str(request.param)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cleave.db'}"


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL to use (each test gets its own schema through the harness)."""
    return require_postgres()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: SQLite, and PostgreSQL when it answers."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cleave.db'}"
    return require_postgres()


@pytest.fixture
def driver() -> Iterator[SyncDriver]:
    """One event loop for a synchronous test (hypothesis state machines)."""
    sync = SyncDriver()
    yield sync
    sync.close()

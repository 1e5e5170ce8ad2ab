"""Running the shop in tests: bootstrapped with real parts, driven from sync or async code."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Literal, TypeVar

import asyncpg
from sqlalchemy import text

from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import bootstrap, create_tables
from entrypoints.settings import Settings
from entrypoints.up import free_port
from kernel.module import Module
from kernel.runtime import Runtime

T = TypeVar("T")

#: Settings that keep tests fast without faking anything: cheap password hashing, quick
#: retries, short payment timeouts.
TEST_SETTINGS = Settings(
    password_hash_cost="low",
    delivery_backoff_seconds=0.01,
    payment_timeout_seconds=0.5,
    payment_attempts=2,
    payment_breaker_threshold=1000,
    payment_breaker_cooldown_seconds=0.5,
    order_timeout_seconds=30.0,
    # Load tests place hundreds of orders for one customer in seconds.
    max_open_orders=100_000,
    orders_per_minute=100_000,
)


async def open_database(url: str, pool_size: int = 16) -> Database:
    """A fresh, empty database: a SQLite file as given, or a new PostgreSQL schema (with at
    most ``pool_size`` connections)."""
    if url.startswith("postgres"):
        database = Database(url, schema=f"t_{uuid.uuid4().hex[:12]}", pool_size=pool_size)
    else:
        database = Database(url)
    return database


async def cut_off(database: Database, connection: Any) -> int:
    """Have PostgreSQL end the session behind ``connection`` (as a restart or a network
    fault would); its backend's pid."""

    pid = int(await connection.scalar(text("SELECT pg_backend_pid()")))
    url = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
    killer = await asyncpg.connect(url)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    return pid


async def drop_database(database: Database) -> None:
    if database.schema is not None and not database.is_sqlite:
        async with database.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE'))
    await database.dispose()


#: The transports a module test runs over: direct calls, the wire codec in one process, and
#: real HTTP to the process's own internal endpoints (signed, on 127.0.0.1).
Transport = Literal["inprocess", "loopback", "http"]


@contextlib.asynccontextmanager
async def running_shop(
    database_url: str,
    *,
    transport: Transport = "inprocess",
    settings: Settings = TEST_SETTINGS,
    modules: Sequence[Module] | None = None,
    pool_size: int = 16,
    **ports: Any,
) -> AsyncIterator[Runtime]:
    """A started runtime over a fresh database; stopped and dropped afterwards."""
    database = await open_database(database_url, pool_size)
    try:
        await create_tables(database, modules)
        async with _over(transport, settings) as local:
            runtime = bootstrap(
                database=database,
                transport=local.transport,
                settings=settings,
                modules=modules,
                **ports,
            )
            await local.serve(runtime)
            await runtime.start()
            try:
                yield runtime
            finally:
                await runtime.stop(grace=5)
    finally:
        await drop_database(database)


class LocalTransport:
    """How a test's modules reach each other: by name, or over HTTP to an internal server
    of this process (uvicorn, on the test's own event loop).

    ``transport`` goes to ``bootstrap``; ``serve(runtime)`` starts the server (HTTP only)
    once the runtime exists; ``close()`` stops it."""

    def __init__(self, transport: Transport, settings: Settings) -> None:
        self.settings = settings
        self.transport: Any = transport
        self._server: Any = None
        self._client: Any = None
        if transport == "http":
            from adapters.bus.http.client import HttpClient, HttpTransport
            from adapters.bus.http.signing import Signer

            self.port = free_port()
            self._client = HttpClient(Signer(settings.service_key, "tests"), timeout=10)
            url = f"http://127.0.0.1:{self.port}"
            self.transport = lambda receiver: HttpTransport(
                self._client, receiver.codec.with_format("msgpack"), [url], module="local"
            )

    async def serve(self, runtime: Runtime) -> None:
        if self._client is None:
            return
        from adapters.bus.http.server import internal_app
        from adapters.bus.http.signing import Verifier
        from kernel.receiver import Receiver

        assert runtime.receiver is not None
        json = runtime.receiver
        receivers = {
            "application/json": json,
            "application/msgpack": Receiver(json.dispatcher, json.codec.with_format("msgpack")),
        }
        app = internal_app(
            lambda: receivers,
            Verifier(self.settings.service_key),
            frozenset(runtime.bus.registry.modules),
        )
        self._server = await start_server(app, self.port)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._client is not None:
            await self._client.close()


async def start_server(app: Any, port: int) -> Any:
    """Serve an ASGI app on 127.0.0.1:``port`` from the running event loop (uvicorn, as in
    production, but without taking over the process's signals); ``await server.shutdown()``
    stops it."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off", access_log=False
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    return server


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """An app served over real HTTP on this event loop; yields its base URL."""
    port = free_port()
    server = await start_server(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.shutdown()


@contextlib.asynccontextmanager
async def _over(transport: Transport, settings: Settings) -> AsyncIterator[LocalTransport]:
    local = LocalTransport(transport, settings)
    try:
        yield local
    finally:
        await local.close()


class SyncDriver:
    """Drives async code from synchronous test code (hypothesis rules) on one event loop.

    Create one per test and share it between the examples of a state machine: one loop
    per test, never one per step.
    """

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return self._runner.run(wrapper())

    def close(self) -> None:
        self._runner.close()

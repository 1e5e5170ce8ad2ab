"""One process of a deployment, composed from its entry in a topology.

A ``ProcessPlan`` says what a process hosts and how it reaches the rest: the monolith hosts
every module; a service of a split topology hosts its own modules, reaches the others over
HTTP (or Redis), opens only its own modules' databases and runs only their relays and timers.
It imports its own modules' packages and only the contracts of the others.

``RunningProcess`` turns a plan into a started runtime and stops it again; the ASGI app's
lifespan and the Redis worker both use it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import (
    SHOP_PACKAGES,
    Remote,
    bootstrap,
    prepare_schema,
    shop_contracts,
)
from entrypoints.settings import Settings
from entrypoints.topology import Service, Topology, TransportKind
from kernel.codec import Codec
from kernel.errors import ConfigurationError
from kernel.messages import SYSTEM
from kernel.module import declared_messages
from kernel.receiver import Receiver
from kernel.runtime import Runtime

log = logging.getLogger("cleave.process")


@dataclass(frozen=True)
class RemoteModule:
    """How this process reaches a module hosted elsewhere."""

    transport: TransportKind
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessPlan:
    """What one process hosts, where its modules keep their state, and how it reaches the rest."""

    name: str
    hosted: tuple[str, ...]
    public: bool
    database_urls: Mapping[str, str]
    remote: Mapping[str, RemoteModule] = field(default_factory=dict)
    #: The topology it comes from, for the records (None: ``cleave run``).
    topology: str | None = None

    @property
    def split(self) -> bool:
        """Whether some module runs in another process."""
        return bool(self.remote)


def monolith_plan(settings: Settings) -> ProcessPlan:
    """``cleave run``: every module in this process, on ``CLEAVE_DATABASE_URL``."""
    return ProcessPlan(
        name="shop",
        hosted=tuple(SHOP_PACKAGES),
        public=True,
        database_urls={name: settings.database_url for name in SHOP_PACKAGES},
    )


def service_plan(
    topology: Topology, service: Service, environ: Mapping[str, str] | None = None
) -> ProcessPlan:
    """The plan of ``service`` in ``topology`` (addresses and databases from ``environ``)."""
    environ = os.environ if environ is None else environ
    remote: dict[str, RemoteModule] = {}
    for module in topology.modules:
        if module in service.modules:
            continue
        transport = topology.transport_of(module)
        addresses = tuple(topology.addresses(module, environ)) if transport == "http" else ()
        if transport == "http" and not addresses:
            raise ConfigurationError(f"{topology.source}: no address for module {module!r}")
        remote[module] = RemoteModule(transport, addresses)
    return ProcessPlan(
        name=service.name,
        hosted=service.modules,
        public=service.public,
        database_urls={m: topology.database_url(m, environ) for m in service.modules},
        remote=remote,
        topology=topology.name,
    )


class RunningProcess:
    """A plan, started: databases open, runtime running, remote clients connected."""

    def __init__(self, plan: ProcessPlan, settings: Settings) -> None:
        self.plan = plan
        self.settings = settings
        self.runtime: Runtime | None = None
        self.databases: dict[str, Database] = {}
        #: The receiving side, by the media type of the frames it reads.
        self.receivers: dict[str, Receiver] = {}
        self.http_client: Any = None
        self.queue_client: Any = None
        self._provider: Any = None
        self._sandbox: Any = None
        self._locks: list[Any] = []

    async def start(self) -> Runtime:
        """Open the databases, wire the modules, start relays and timers."""
        from entrypoints.bootstrap import shop_modules

        plan, settings = self.plan, self.settings
        refusals = settings.refusals(split=plan.split)
        if refusals:
            raise ConfigurationError("refusing to start:\n  " + "\n  ".join(refusals))
        for warning in settings.warnings():
            if plan.split or "SERVICE_KEY" not in warning:
                log.warning(warning)
        modules = shop_modules(plan.hosted)
        self.databases = self._open_databases()
        await prepare_schema(self.databases, modules, settings)
        self._claim_sqlite_files()
        remote = self._remote_modules()
        provider = await self._payment_provider() if "payments" in plan.hosted else None
        runtime = bootstrap(
            database=self.databases,
            transport=settings.bus,
            payment_provider=provider,
            settings=settings,
            modules=modules,
            remote=remote,
        )
        if self.http_client is not None:
            runtime.closers.append(self.http_client.close)
        if self.queue_client is not None:
            runtime.closers.append(self.queue_client.close)
        assert runtime.receiver is not None
        self.receivers = {"application/json": runtime.receiver}
        self.receivers["application/msgpack"] = Receiver(
            runtime.receiver.dispatcher, runtime.receiver.codec.with_format("msgpack")
        )
        await runtime.start()
        self.runtime = runtime
        await self._ensure_admin(runtime)
        where = ", ".join(sorted({db.display_url for db in self.databases.values()})) or "-"
        log.info(
            "%s is serving %s (databases: %s)%s",
            plan.name,
            ", ".join(plan.hosted) or "no module",
            where,
            "; remote: " + ", ".join(f"{m} over {r.transport}" for m, r in plan.remote.items())
            if plan.remote
            else "",
        )
        return runtime

    async def stop(self) -> None:
        """Stop relays and timers (finishing deliveries in flight), then close everything."""
        try:
            if self.runtime is not None:
                await self.runtime.stop(self.settings.shutdown_grace_seconds)
        finally:
            self.runtime = None
            if self._provider is not None:
                await self._provider.close()
            if self._sandbox is not None:
                self._sandbox.stop()
            for database in {id(db): db for db in self.databases.values()}.values():
                await database.dispose()
            for lock in self._locks:
                lock.release()
            self._locks = []

    # -- the parts --------------------------------------------------------------------------

    def _open_databases(self) -> dict[str, Database]:
        # Modules that share a URL share one engine (the monolith: one file for all).
        by_url: dict[str, Database] = {}
        databases = {}
        for module, url in self.plan.database_urls.items():
            database = by_url.get(url)
            if database is None:
                database = by_url[url] = Database(
                    url,
                    schema=self.settings.database_schema,
                    pool_size=self.settings.database_pool_size,
                )
                if database.is_sqlite and database.url.database:
                    Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
            databases[module] = database
        return databases

    def _claim_sqlite_files(self) -> None:
        from adapters.sqlalchemy.single_instance import claim_sqlite_file

        for database in {id(db): db for db in self.databases.values()}.values():
            if database.is_sqlite:
                self._locks.append(claim_sqlite_file(database, self.plan.name))

    def _remote_modules(self) -> dict[str, Remote]:
        plan, settings = self.plan, self.settings
        if not plan.remote:
            return {}
        contracts = shop_contracts()
        codec = Codec(
            [cls for module in contracts.values() for cls in declared_messages(module)],
            settings.wire_format,
        )
        remote: dict[str, Remote] = {}
        for module, where in plan.remote.items():
            if where.transport == "http":
                remote[module] = Remote(
                    contracts[module],
                    self._http_transport(module, where.addresses, codec),
                )
            else:
                remote[module] = Remote(contracts[module], self._queue_transport(module, codec))
        return remote

    def _queue_transport(self, module: str, codec: Codec) -> Any:
        """The transport to a module reached over the broker (Redis, or RabbitMQ)."""
        from adapters.bus.redis.client import QueueClient, QueueTransport

        if self.queue_client is None:
            self.queue_client = QueueClient.from_settings(self.settings, self.plan.name)
        return QueueTransport(self.queue_client, codec.with_format("json"), module)

    def _http_transport(self, module: str, addresses: tuple[str, ...], codec: Codec) -> Any:
        from adapters.bus.http.client import HttpClient, HttpTransport
        from adapters.bus.http.signing import Signer

        settings = self.settings
        if self.http_client is None:
            self.http_client = HttpClient(
                Signer(settings.service_key, self.plan.name),
                timeout=settings.remote_timeout_seconds,
                breaker_threshold=settings.remote_breaker_threshold,
                breaker_cooldown=settings.remote_breaker_cooldown_seconds,
            )
        return HttpTransport(self.http_client, codec, addresses, module=module)

    async def _payment_provider(self) -> Any:
        from adapters.payments.http_provider import HttpPaymentProvider
        from adapters.payments.sandbox import SandboxPaymentProvider

        url = self.settings.payment_provider_url
        if url is None:
            self._sandbox = SandboxPaymentProvider()
            self._sandbox.start()
            url = self._sandbox.url
            log.info("sandbox payment provider listening on %s", url)
        self._provider = HttpPaymentProvider.from_settings(url, self.settings)
        return self._provider

    async def _ensure_admin(self, runtime: Runtime) -> None:
        settings = self.settings
        if "identity" not in self.plan.hosted or not (
            settings.admin_email and settings.admin_password
        ):
            return
        from modules.identity.contracts import EnsureAdmin

        await runtime.bus.send(
            EnsureAdmin(email=settings.admin_email, password=settings.admin_password),
            principal=SYSTEM,
        )
        log.info("admin account %s is ready", settings.admin_email)

"""The composition root: the one place that knows every module and every adapter.

``bootstrap`` takes the ports of a process (its database, the transport between its modules,
the outside services, the clock) as arguments and returns the wired ``Runtime``. Tests call it
with real parts; only the outside payment provider may be a stand-in (a real HTTP server).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import punq

from adapters.bus.inprocess import InProcessTransport
from adapters.bus.loopback import LoopbackTransport
from adapters.memory import MemoryOutbox, MemoryStorage
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.migrations import (
    FromEmpty,
    History,
    Position,
    module_histories,
    positions,
    upgrade,
)
from adapters.sqlalchemy.outbox import SqlOutboxStore
from adapters.sqlalchemy.storage import SqlStorage
from entrypoints.settings import Settings
from kernel.bus import Bus, MessageBus, Transport
from kernel.clock import Clock, SystemClock
from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.errors import ConfigurationError
from kernel.module import Module
from kernel.observe import Observer
from kernel.outbox import OutboxStore, RetryPolicy
from kernel.receiver import Receiver
from kernel.registry import Registry
from kernel.relay import Relay
from kernel.runtime import Runtime, ScheduledTimer
from kernel.unit_of_work import Storage, Transaction

if TYPE_CHECKING:
    from adapters.observability.tracing import Tracing
    from modules.identity.ports import PasswordHasher, TokenIssuer
    from modules.payments.ports import PaymentProvider

TransportName = Literal["inprocess", "loopback"]

#: The shop's modules, by name, with the package that holds each; a process imports the
#: ``contracts`` of every one, and the rest of a package only where the module runs.
SHOP_PACKAGES: dict[str, str] = {
    "identity": "modules.identity",
    "catalog": "modules.catalog",
    "inventory": "modules.inventory",
    "ordering": "modules.ordering",
    "payments": "modules.payments",
    "notifications": "modules.notifications",
}


def shop_modules(names: Sequence[str] | None = None) -> list[Module]:
    """The shop's modules (or those named), in the order their routes appear in the API."""
    wanted = list(SHOP_PACKAGES) if names is None else [n for n in SHOP_PACKAGES if n in names]
    unknown = set(names or ()) - set(SHOP_PACKAGES)
    if unknown:
        raise ConfigurationError(f"the shop has no module {', '.join(sorted(unknown))}")
    return [importlib.import_module(f"{SHOP_PACKAGES[name]}.module").module for name in wanted]


def shop_contracts(names: Sequence[str] | None = None) -> dict[str, ModuleType]:
    """The contracts of the shop's modules (or those named): all it takes to address them."""
    wanted = list(SHOP_PACKAGES) if names is None else names
    return {name: importlib.import_module(f"{SHOP_PACKAGES[name]}.contracts") for name in wanted}


@dataclass(frozen=True)
class Remote:
    """A module that another process hosts: its contracts, and the transport that reaches it
    (``None``: declared, so that the registry knows it, but not reachable from here)."""

    contracts: ModuleType
    transport: Transport | None = None


def bootstrap(
    *,
    database: Database | Mapping[str, Database],
    transport: TransportName | Callable[[Receiver], Transport] = "inprocess",
    payment_provider: PaymentProvider | None = None,
    password_hasher: PasswordHasher | None = None,
    token_issuer: TokenIssuer | None = None,
    clock: Clock | None = None,
    settings: Settings | None = None,
    modules: Sequence[Module] | None = None,
    remote: Mapping[str, Remote] | None = None,
    hosted: Sequence[str] | None = None,
    ports: Mapping[type[Any], Any] | None = None,
    wrap_transport: Callable[[Transport], Transport] | None = None,
    observer: Observer | None = None,
    tracing: Tracing | None = None,
) -> Runtime:
    """Wire the modules of one process and return its runtime (not yet started).

    The ports are the outside world: the database (one for every hosted module, or one per
    module), the transport between the modules hosted here (by name, or built from this
    process's receiving side, as a test does to call itself over HTTP), the payment provider, the
    password hasher and token issuer (defaults built from ``settings``), and the clock.
    ``modules`` are the modules this process runs (default: the whole shop); ``remote`` the
    others, each with its contracts and the transport that reaches it. ``hosted`` narrows
    ``modules`` to those named and declares the rest as unreachable remotes (tools, tests).
    ``ports`` binds further collaborators by type, for modules other than the shop's.
    ``wrap_transport`` decorates the local transport (fault injection in tests, tracing).
    ``observer`` is told about every handled message (default: the process's log lines and
    Prometheus metrics); ``tracing`` opens OpenTelemetry spans around every handler and bus
    hop (default: when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set).
    """
    clock = clock or SystemClock()
    settings = settings or Settings()
    tracing = tracing or _process_tracing()
    modules, remote = _split_hosted(
        list(modules) if modules is not None else shop_modules(), dict(remote or {}), hosted
    )
    registry = Registry(modules, {name: entry.contracts for name, entry in remote.items()})
    container = _container(
        settings, clock, modules, ports, payment_provider, password_hasher, token_issuer
    )
    outbox = MemoryOutbox()
    bus = MessageBus(registry, outbox)
    _wire_modules(container, bus, modules)

    codec = Codec(registry.message_types(), "json")
    persistence = _Persistence(database, registry, codec, clock, outbox, bus, settings)
    storages, relays, timers = persistence.build(modules)
    dispatcher = Dispatcher(registry, storages, container.resolve, clock)
    dispatcher.observer = observer if observer is not None else _process_observer(transport)
    if tracing is not None:
        dispatcher.tracer = tracing
    receiver = Receiver(dispatcher, codec)
    local = _local_transport(transport, dispatcher, receiver, codec, wrap_transport, tracing)
    bus.connect(_transports(modules, local, remote, tracing))
    return Runtime(
        bus=bus,
        relays=relays,
        timers=timers,
        clock=clock,
        container=container,
        receiver=receiver,
    )


def _split_hosted(
    modules: list[Module], remote: dict[str, Remote], hosted: Sequence[str] | None
) -> tuple[list[Module], dict[str, Remote]]:
    """The modules this process runs, and the remotes: with ``hosted``, the modules it does
    not name are declared as remotes no transport reaches."""
    if hosted is None:
        return modules, remote
    remote.update({m.name: Remote(m.contracts) for m in modules if m.name not in hosted})
    return [module for module in modules if module.name in hosted], remote


def _wire_modules(container: punq.Container, bus: MessageBus, modules: Sequence[Module]) -> None:
    """Bind the bus, then let each module register its own collaborators."""
    container.register(Bus, instance=bus)
    container.register(MessageBus, instance=bus)
    for module in modules:
        if module.wiring is not None:
            module.wiring(container)


@dataclass(frozen=True)
class _Persistence:
    """What the hosted modules' storages and relays are built from."""

    database: Database | Mapping[str, Database]
    registry: Registry
    codec: Codec
    clock: Clock
    outbox: MemoryOutbox
    bus: MessageBus
    settings: Settings

    def build(
        self, modules: Sequence[Module]
    ) -> tuple[dict[str, Storage], list[Relay], list[ScheduledTimer]]:
        """Each module's storage; the relays that deliver what the units of work committed
        (the in-memory outbox's, then each SQL outbox's); and the modules' timers."""
        memory_relay = self._relay("memory", self.outbox)
        self.outbox.on_add = memory_relay.notify
        relays = [memory_relay]
        storages: dict[str, Storage] = {}
        timers: list[ScheduledTimer] = []
        for module in modules:
            storage, relay = self._storage(module)
            storages[module.name] = storage
            if relay is not None:
                relays.append(relay)
            timers.extend(
                ScheduledTimer(module.name, timer, storage.claim_tick) for timer in module.timers
            )
        return storages, relays, timers

    def _storage(self, module: Module) -> tuple[Storage, Relay | None]:
        """Where ``module`` keeps its state, and the relay of its outbox (SQL storage only)."""
        if module.tables is None:
            return MemoryStorage(self.registry, self.outbox.add), None
        database = _database_of(module, self.database)
        lease = self.settings.delivery_lease_seconds
        storage = SqlStorage(
            database, module.name, self.registry, self.codec, self.clock, lease_seconds=lease
        )
        relay = self._relay(module.name, SqlOutboxStore(storage))
        storage.on_commit = relay.notify
        storage.relay = relay
        return storage, relay

    def _relay(self, name: str, store: OutboxStore) -> Relay:
        policy = RetryPolicy(
            max_attempts=self.settings.delivery_attempts,
            base_delay=self.settings.delivery_backoff_seconds,
        )
        return Relay(name, store, self.bus.deliver, self.clock, policy)


def _database_of(module: Module, database: Database | Mapping[str, Database]) -> Database:
    """The database ``module`` keeps its state in: the one of the process, or its own."""
    return database if isinstance(database, Database) else database[module.name]


def _local_transport(
    transport: TransportName | Callable[[Receiver], Transport],
    dispatcher: Dispatcher,
    receiver: Receiver,
    codec: Codec,
    wrap_transport: Callable[[Transport], Transport] | None,
    tracing: Tracing | None,
) -> Transport:
    """The transport to the modules hosted here, as named (or built from ``receiver``),
    wrapped by the caller's decoration, then by tracing (outermost)."""
    local: Transport
    if transport == "inprocess":
        local = InProcessTransport(dispatcher)
    elif transport == "loopback":
        local = LoopbackTransport(receiver, codec)
    elif callable(transport):
        local = transport(receiver)
    else:
        raise ConfigurationError(f"unknown transport {transport!r}: inprocess or loopback")
    if wrap_transport is not None:
        local = wrap_transport(local)
    return local if tracing is None else tracing.transport(local)


def _transports(
    modules: Sequence[Module],
    local: Transport,
    remote: Mapping[str, Remote],
    tracing: Tracing | None,
) -> dict[str, Transport]:
    """The transport to each module the bus can reach: the local one for the hosted
    modules, each reachable remote's own (traced when the process traces)."""
    transports: dict[str, Transport] = {module.name: local for module in modules}
    for name, entry in remote.items():
        if entry.transport is not None:
            transports[name] = (
                entry.transport if tracing is None else tracing.transport(entry.transport)
            )
    return transports


def _process_observer(transport: object) -> Observer:
    from adapters.observability.messages import OBSERVER

    if transport == "loopback":
        OBSERVER.wire = "loopback"
    return OBSERVER


def _process_tracing() -> Tracing | None:
    # OpenTelemetry is imported only where it is used.
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from adapters.observability.tracing import process_tracing

    return process_tracing()


def _container(
    settings: Settings,
    clock: Clock,
    modules: Sequence[Module],
    ports: Mapping[type[Any], Any] | None,
    payment_provider: PaymentProvider | None,
    password_hasher: PasswordHasher | None,
    token_issuer: TokenIssuer | None,
) -> punq.Container:
    """The punq container with the process's ports; the modules' wiring adds the rest."""
    container = punq.Container()
    container.register(Transaction, instance=Transaction())
    container.register(Clock, instance=clock)
    container.register(Settings, instance=settings)
    # A module's ports are imported only where it runs: a service imports no other
    # module's code than its contracts.
    hosted = {module.name for module in modules}
    bound = dict(ports or {})
    if payment_provider is not None:
        from modules.payments.ports import PaymentProvider

        bound[PaymentProvider] = payment_provider
    if "identity" in hosted:
        from adapters.auth.passwords import Argon2PasswordHasher
        from adapters.http.auth import JwtTokenIssuer
        from modules.identity.ports import PasswordHasher, TokenIssuer

        bound[PasswordHasher] = password_hasher or Argon2PasswordHasher(settings.password_hash_cost)
        bound[TokenIssuer] = token_issuer or JwtTokenIssuer(
            settings.jwt_secret, settings.jwt_ttl_seconds
        )
    if "ordering" in hosted:
        from modules.ordering.settings import OrderingSettings

        bound.setdefault(
            OrderingSettings,
            OrderingSettings(
                order_timeout_seconds=settings.order_timeout_seconds,
                max_open_orders=settings.max_open_orders,
                orders_per_minute=settings.orders_per_minute,
                idempotency_key_seconds=settings.idempotency_key_seconds,
                price_cache_seconds=settings.price_cache_seconds,
            ),
        )
    for port, implementation in bound.items():
        container.register(port, instance=implementation)
    return container


def schema_histories(module: Module) -> list[History]:
    """The migration histories of ``module``: its tables', then its messaging tables'."""
    return module_histories(module.name, module.package, module.tables)


def _by_database(
    database: Database | Mapping[str, Database], modules: Sequence[Module] | None
) -> list[tuple[Database, list[History]]]:
    """Each database with the histories of the modules that keep their state in it."""
    modules = list(modules) if modules is not None else shop_modules()
    grouped: dict[int, tuple[Database, list[History]]] = {}
    for module in modules:
        if module.tables is None:
            continue  # no tables, no database: the process maps none to it
        own = _database_of(module, database)
        grouped.setdefault(id(own), (own, []))[1].extend(schema_histories(module))
    return [entry for entry in grouped.values() if entry[1]]


async def create_tables(
    database: Database | Mapping[str, Database],
    modules: Sequence[Module] | None = None,
    *,
    from_empty: FromEmpty = "create",
) -> None:
    """Bring each module's tables and its outbox, inbox, dead-letter and timer tables, in
    its own database (``database``: one for all, or one per module), to the head of their
    migrations. An empty database gets the models' tables at once (``from_empty="create"``,
    as fast as ``create_all``) or every revision in turn (``"migrate"``)."""
    for own, histories in _by_database(database, modules):
        await upgrade(own, histories, from_empty=from_empty)


async def schema_positions(
    database: Database | Mapping[str, Database], modules: Sequence[Module] | None = None
) -> list[Position]:
    """Where each module's migrations stand in its database."""
    found: list[Position] = []
    for own, histories in _by_database(database, modules):
        found.extend(await positions(own, histories))
    return found


async def prepare_schema(
    database: Database | Mapping[str, Database],
    modules: Sequence[Module],
    settings: Settings,
) -> None:
    """At start-up: migrate to the head (development, or ``CLEAVE_MIGRATE_AT_START=true``),
    or refuse to start on a database behind the code (production: the operator migrates,
    with ``cleave db upgrade``, before the new version starts)."""
    migrate = settings.migrate_at_start
    if migrate is None:
        migrate = settings.env == "development"
    if migrate:
        await create_tables(database, modules)
        return
    behind = [position for position in await schema_positions(database, modules) if position.behind]
    if behind:
        raise ConfigurationError(
            "the database is behind this version's migrations:\n  "
            + "\n  ".join(position.describe() for position in behind)
            + "\nrun `cleave db upgrade` (with --topology FILE for a split deployment) first, "
            "or set CLEAVE_MIGRATE_AT_START=true"
        )

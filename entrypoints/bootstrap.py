"""The composition root: the one place that knows every module and every adapter.

``bootstrap`` takes the ports of a process (its database, the transport between its modules,
the outside services, the clock) as arguments and returns the wired ``Runtime``. Tests call it
with real parts; only the outside payment provider may be a stand-in (a real HTTP server).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import punq

from adapters.bus.inprocess import InProcessTransport
from adapters.bus.loopback import LoopbackTransport
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables
from adapters.sqlalchemy.storage import SqlOutboxStore, SqlStorage
from entrypoints.settings import Settings
from kernel.bus import Bus, MessageBus, Transport
from kernel.clock import Clock, SystemClock
from kernel.codec import Codec
from kernel.dispatch import Dispatcher
from kernel.module import Module
from kernel.registry import Registry
from kernel.relay import MemoryOutbox, Relay, RetryPolicy
from kernel.runtime import Runtime
from kernel.unit_of_work import MemoryStorage, Storage, Transaction
from modules.identity.ports import PasswordHasher, TokenIssuer
from modules.ordering.ports import OrderingSettings
from modules.payments.ports import PaymentProvider

TransportName = Literal["inprocess", "loopback"]


def shop_modules() -> list[Module]:
    """Every module of the shop, in the order their routes appear in the API."""
    from modules.catalog.module import module as catalog
    from modules.identity.module import module as identity
    from modules.inventory.module import module as inventory
    from modules.notifications.module import module as notifications
    from modules.ordering.module import module as ordering
    from modules.payments.module import module as payments

    return [identity, catalog, inventory, ordering, payments, notifications]


def bootstrap(
    *,
    database: Database,
    transport: TransportName = "inprocess",
    payment_provider: PaymentProvider | None = None,
    password_hasher: PasswordHasher | None = None,
    token_issuer: TokenIssuer | None = None,
    clock: Clock | None = None,
    settings: Settings | None = None,
    modules: Sequence[Module] | None = None,
    hosted: Sequence[str] | None = None,
    ports: Mapping[type[Any], Any] | None = None,
    wrap_transport: Callable[[Transport], Transport] | None = None,
) -> Runtime:
    """Wire the modules of one process and return its runtime (not yet started).

    The ports are the outside world: the database, the transport between modules, the
    payment provider, the password hasher and token issuer (defaults built from
    ``settings``), and the clock. ``hosted`` names the modules this process runs (default:
    all); every module is still declared, so the registry checks the whole system.
    ``ports`` binds further collaborators by type, for modules other than the shop's.
    ``wrap_transport`` decorates the transport (fault injection in tests, tracing).
    """
    from adapters.auth.passwords import Argon2PasswordHasher
    from adapters.http.auth import JwtTokenIssuer

    clock = clock or SystemClock()
    settings = settings or Settings()
    ports = dict(ports or {})
    if payment_provider is not None:
        ports[PaymentProvider] = payment_provider
    ports[PasswordHasher] = password_hasher or Argon2PasswordHasher(settings.password_hash_cost)
    ports[TokenIssuer] = token_issuer or JwtTokenIssuer(
        settings.jwt_secret, settings.jwt_ttl_seconds
    )
    ports.setdefault(
        OrderingSettings, OrderingSettings(order_timeout_seconds=settings.order_timeout_seconds)
    )
    modules = list(modules) if modules is not None else shop_modules()
    hosted_names = set(hosted) if hosted is not None else {module.name for module in modules}
    registry = Registry(modules)

    container = punq.Container()
    outbox = MemoryOutbox()
    bus = MessageBus(registry, outbox)
    container.register(Bus, instance=bus)
    container.register(MessageBus, instance=bus)
    container.register(Transaction, instance=Transaction())
    container.register(Clock, instance=clock)
    container.register(Settings, instance=settings)
    for port, implementation in ports.items():
        container.register(port, instance=implementation)
    for module in modules:
        if module.name in hosted_names and module.wiring is not None:
            module.wiring(container)

    codec = Codec(registry.message_types(), "json")
    policy = RetryPolicy(
        max_attempts=settings.delivery_attempts, base_delay=settings.delivery_backoff_seconds
    )
    relays: list[Relay] = []
    storages: dict[str, Storage] = {}
    memory_relay = Relay("memory", outbox, bus.deliver, clock, policy)
    outbox.on_add = memory_relay.notify
    relays.append(memory_relay)
    for module in modules:
        if module.name not in hosted_names:
            continue
        if module.tables is None:
            storages[module.name] = MemoryStorage(registry, outbox.add)
            continue
        storage = SqlStorage(database, module.name, registry, codec, clock)
        relay = Relay(module.name, SqlOutboxStore(storage), bus.deliver, clock, policy)
        storage.on_commit = relay.notify
        storages[module.name] = storage
        relays.append(relay)

    dispatcher = Dispatcher(registry, storages, container.resolve)
    local: Transport
    if transport == "inprocess":
        local = InProcessTransport(dispatcher)
    else:
        local = LoopbackTransport(dispatcher, codec)
    if wrap_transport is not None:
        local = wrap_transport(local)
    bus.connect({name: local for name in hosted_names})

    timers = [timer for module in modules if module.name in hosted_names for timer in module.timers]
    return Runtime(bus=bus, relays=relays, timers=timers, clock=clock, container=container)


async def create_tables(database: Database, modules: Sequence[Module] | None = None) -> None:
    """Create each module's tables and its outbox, inbox and dead-letter tables."""
    modules = list(modules) if modules is not None else shop_modules()
    metadatas = []
    for module in modules:
        if module.tables is not None:
            metadatas.append(module.tables)
            metadatas.append(messaging_tables(module.name).metadata)
    await database.create_all(metadatas)

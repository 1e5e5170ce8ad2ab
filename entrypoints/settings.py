"""The shop's settings, read from ``CLEAVE_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.bus.http.signing import DEVELOPMENT_SERVICE_KEY
from entrypoints.environment import load_settings

#: The signing secret used when none is configured. Fine on a laptop, never in production:
#: the app warns at start-up while it is in use.
DEVELOPMENT_JWT_SECRET = "cleave-development-secret-change-me-0123456789"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    #: "development" warns about unsafe defaults; "production" refuses to start with them.
    env: Literal["development", "production"] = "development"
    #: Where state lives: a SQLite file by default, or e.g. postgresql://user@host/db.
    database_url: str = "sqlite+aiosqlite:///cleave.db"
    #: PostgreSQL only: keep every table in this schema (created if missing).
    database_schema: str | None = None
    #: PostgreSQL only: the most connections a process opens (seven eighths of them kept
    #: open). Every process of a deployment has its own pool, and the server's
    #: ``max_connections`` (100 by default) must hold them all: 16 fits six services.
    database_pool_size: int = 16
    #: Whether start-up migrates the database to this version's schema (unset: yes in
    #: development; in production the process refuses a database that is behind, and the
    #: operator runs ``cleave db upgrade`` first).
    migrate_at_start: bool | None = None
    #: How modules in this process reach each other: direct calls, or through the wire codec.
    bus: Literal["inprocess", "loopback"] = "inprocess"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    #: "console": readable lines in a terminal; "json": one JSON object per line.
    log_format: Literal["console", "json"] = "console"
    #: HMAC secret that signs access tokens (at least 32 characters).
    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_ttl_seconds: int = 3600
    #: An admin account ensured at start when both are set.
    admin_email: str | None = None
    admin_password: str | None = None
    #: The payment provider; when unset the app starts its own sandbox provider.
    payment_provider_url: str | None = None
    #: The secret key the provider expects (``Authorization: Bearer ...``); none for the sandbox.
    payment_provider_key: str | None = None
    payment_timeout_seconds: float = 2.0
    payment_attempts: int = 3
    payment_breaker_threshold: int = 5
    payment_breaker_cooldown_seconds: float = 30.0
    #: Login and register calls allowed per client address and minute (each route its own).
    auth_rate_limit_per_minute: int = 20
    #: Failed logins (401) allowed per account, from any address, in a moving window.
    login_failures_per_account: int = 10
    login_failure_window_seconds: int = 900
    #: Where the edge counts: "memory" (this process), "redis" (at CLEAVE_REDIS_URL, shared
    #: by the instances of a gateway), or "auto": redis when the topology reaches a module
    #: over Redis or runs several instances of the public service, memory otherwise.
    rate_limit_storage: Literal["auto", "memory", "redis"] = "auto"
    #: Proxies whose X-Forwarded-For names the client: comma-separated addresses or networks
    #: (none by default: the peer's own address is the client's).
    trusted_proxies: str = ""
    #: Seconds a client has to send its whole request head, and each part of its body.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    #: Open client connections per process at most (lowered to fit the file limit).
    max_connections: int = 1000
    #: Largest accepted request body, in bytes.
    max_body_bytes: int = 64 * 1024
    #: An order not settled after this long is compensated.
    order_timeout_seconds: float = 60.0
    #: Per customer: the most orders still PENDING at once, and the most placed in a minute
    #: (a person's pace with room to spare; load tests and benchmarks raise both).
    max_open_orders: Annotated[int, msgspec.Meta(ge=1)] = 20
    orders_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 60
    #: How long a customer's Idempotency-Key is remembered (at least a day: clients retry
    #: for hours).
    idempotency_key_seconds: Annotated[float, msgspec.Meta(ge=86_400.0)] = 86_400.0
    #: How long ordering uses a price the catalog gave for new orders (events update it
    #: meanwhile); 0 asks the catalog for every order (docs/adr/0018-price-cache.md).
    price_cache_seconds: Annotated[float, msgspec.Meta(ge=0.0)] = 30.0
    #: Relay: how many times a failed delivery is tried before it becomes a dead letter.
    delivery_attempts: int = 8
    delivery_backoff_seconds: float = 0.2
    #: Seconds a stopping process waits for deliveries in flight.
    shutdown_grace_seconds: float = 10.0
    #: What this process is called by whoever started it (``cleave up`` names each child), said
    #: by ``/health/ready`` so that the supervisor knows the answer on a port is its child's.
    instance: str = ""
    #: Argon2 cost: "default" for production, "low" for tests and demos.
    password_hash_cost: Literal["default", "low"] = "default"
    #: HMAC key every service of a split deployment signs its internal calls with.
    service_key: str = DEVELOPMENT_SERVICE_KEY
    #: How far a signed request's timestamp may be from the receiver's clock, in seconds.
    service_signature_window_seconds: float = 30.0
    #: How long a call to a module in another process may take when its caller set no
    #: deadline (deliveries, timers), in seconds.
    remote_timeout_seconds: float = 10.0
    #: Failed calls in a row that open the circuit of one remote instance, and how long it
    #: stays open before one trial call.
    remote_breaker_threshold: int = 5
    remote_breaker_cooldown_seconds: float = 5.0
    #: Wire format between services: "msgpack" (compact, fast) or "json" (readable).
    wire_format: Literal["msgpack", "json"] = "msgpack"
    #: The broker of modules reached over queues (transport "redis" in a topology).
    broker: Literal["redis", "rabbitmq"] = "redis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: Prefix of every key and queue of this deployment on the broker (several deployments,
    #: or test runs, may share one Redis).
    queue_namespace: str = "dramatiq"
    #: How long a relay waits for a queued delivery's outcome before it sends it again
    #: (the worker died); a worker reports each broker retry, which extends the wait.
    delivery_ack_timeout_seconds: float = 30.0
    #: PostgreSQL: how long an instance's claim on an outbox record lasts; past it, another
    #: instance may deliver the record (the first one died). Longer than any delivery.
    delivery_lease_seconds: float = 30.0

    def warnings(self) -> list[str]:
        """What is unsafe about these settings for anything but development."""
        found = []
        if self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            found.append(
                "CLEAVE_JWT_SECRET is not set: tokens are signed with the public development "
                "secret. Set it (32+ random characters) before exposing the app."
            )
        elif self.jwt_secret and len(self.jwt_secret.encode()) < 32:
            found.append(
                "CLEAVE_JWT_SECRET is shorter than 32 bytes: a token signed with it can be "
                "forged by guessing the secret. Production refuses it."
            )
        if self.service_key == DEVELOPMENT_SERVICE_KEY:
            found.append(
                "CLEAVE_SERVICE_KEY is not set: services of a split deployment sign their "
                "internal calls with the public development key."
            )
        if self.payment_provider_url and not self.payment_provider_key:
            found.append(
                "CLEAVE_PAYMENT_PROVIDER_URL is set without CLEAVE_PAYMENT_PROVIDER_KEY: the "
                "provider is called without credentials."
            )
        if self.password_hash_cost == "low":
            found.append("CLEAVE_PASSWORD_HASH_COST=low: passwords are hashed cheaply.")
        return found

    def refusals(self, *, split: bool, strict: bool = False) -> list[str]:
        """Why these settings must not run in production (``env=production``, or ``strict``
        as for ``cleave serve``): empty when they may. A split deployment needs its own
        service key as well. An empty JWT secret is refused in development too."""
        found = []
        if not self.jwt_secret:
            # Nothing signs with an empty key (every login would fail): refused everywhere.
            found.append(
                "CLEAVE_JWT_SECRET is set but empty: unset it to use the development secret, "
                "or set it to at least 32 random bytes "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.env != "production" and not strict:
            return found
        if self.jwt_secret and (
            self.jwt_secret == DEVELOPMENT_JWT_SECRET or len(self.jwt_secret.encode()) < 32
        ):
            found.append(
                "CLEAVE_JWT_SECRET must be set to a secret of at least 32 bytes in production "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if split and (
            self.service_key == DEVELOPMENT_SERVICE_KEY or len(self.service_key.encode()) < 32
        ):
            found.append(
                "CLEAVE_SERVICE_KEY must be set to a key of at least 32 bytes, the same for "
                "every service, in production "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return found


def settings_from_environment() -> Settings:
    return load_settings(Settings)

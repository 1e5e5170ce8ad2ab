"""A worker of the queue transport: dramatiq's broker and middleware around a hosted runtime.

``worker_broker`` returns the broker a dramatiq ``Worker`` (or ``dramatiq`` command) runs:

* ``Outcomes`` (ours): tells callers about retries and dead letters, books their reasons;
* ``CurrentMessage``: the actors read their message's ``reply_to``;
* ``AgeLimit``: a request is not started once its caller's deadline passed (``max_age``);
* ``TimeLimit``: a request may not run past that deadline, a delivery not past most of the
  relay's patience (then it is retried, and the relay hears so before it gives up);
* ``Retries``: failed deliveries again with exponential back-off, only when the failure is
  retryable, up to ``delivery_attempts``; then dramatiq's dead-letter queue;
* ``AsyncIO``: one event loop thread per worker process, where the runtime lives;
* ``Hosting`` (ours): starts the runtime on that loop before the first message and stops it
  after the last.

Shutdown is dramatiq's: on SIGTERM the worker threads finish their messages (acked only
after the actor returned, so after its unit of work committed), prefetched messages go back
to the queue, then the runtime stops.
"""

from __future__ import annotations

from collections.abc import Sequence

from dramatiq import Broker
from dramatiq.middleware import AgeLimit, AsyncIO, CurrentMessage, Retries, TimeLimit

from adapters.bus.redis.actors import Hosted, WorkerHost, declare_actors
from adapters.bus.redis.broker import WakingRedisBroker, make_broker
from adapters.bus.redis.config import QueueConfig
from adapters.bus.redis.health import HealthServer, Metrics
from adapters.bus.redis.middleware import Hosting, Outcomes
from adapters.bus.redis.reasons import ReasonBook
from adapters.bus.redis.replies import ReplyPusher
from adapters.bus.redis.requests import RequestLane

#: A delivery may run for this share of the relay's patience (``ack_timeout``): a runaway
#: handler is interrupted and retried, and the relay hears "retrying" before it gives up.
DELIVERY_TIME_SHARE = 0.8


def worker_broker(
    config: QueueConfig,
    hosted: Hosted,
    modules: Sequence[str],
    *,
    health: tuple[str, int] | None = None,
    metrics: Metrics | None = None,
    instance: str = "",
) -> tuple[Broker, WorkerHost]:
    """The broker of a worker hosting ``modules`` (their queues declared, actors bound), and
    the host that runs their messages; ``health`` is where to serve the probes (saying
    ``instance``, this process's name given by its supervisor), and ``metrics`` (when given)
    too."""
    if not modules:
        raise ValueError("a worker hosts at least one module")
    host = WorkerHost(hosted, modules, ReplyPusher(config.redis_url, config.reply_ttl))
    book = ReasonBook(config)

    async def checks() -> dict[str, bool]:
        found = await hosted.checks()
        found["redis"] = host.pusher.ping()
        return found

    identity = {"modules": list(modules), "instance": instance}
    probes = HealthServer(health[0], health[1], checks, metrics, identity) if health else None
    middleware = [
        Outcomes(host, book),
        CurrentMessage(),
        AgeLimit(),
        TimeLimit(),
        Retries(
            min_backoff=max(1, int(config.min_backoff * 1000)),
            max_backoff=max(1, int(config.max_backoff * 1000)),
            max_retries=config.delivery_attempts - 1,
        ),
        AsyncIO(),
        Hosting(host, probes),
    ]
    broker = make_broker(config, middleware)
    if isinstance(broker, WakingRedisBroker):
        broker.on_undecodable = lambda queue, dead_id, reason: book.record(
            queue, dead_id, reason, 0
        )
    queues = [config.queue(module) for module in modules]
    if isinstance(broker, WakingRedisBroker):
        # Requests skip dramatiq's threads on Redis (ADR 13); RabbitMQ's go to the actor.
        host.lane = RequestLane(broker, host, queues, config.redis_url)
    declare_actors(
        broker,
        host,
        queues,
        attempts=config.delivery_attempts,
        delivery_time_limit_ms=max(1000, int(config.ack_timeout * 1000 * DELIVERY_TIME_SHARE)),
    )
    return broker, host

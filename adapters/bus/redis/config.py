"""Where the queues are and how they are named, from the process's settings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

BrokerKind = Literal["redis", "rabbitmq"]

#: dramatiq's own default key namespace: a deployment that sets nothing shares it.
DEFAULT_NAMESPACE = "dramatiq"
#: The actors every module queue carries: a command or query waiting for its answer, and an
#: event or deferred command delivered for the relay.
REQUEST_ACTOR = "cleave.request"
DELIVER_ACTOR = "cleave.deliver"
#: On Redis, requests have a queue of their own per module, ``<module>.requests``, which the
#: worker's event loop reads itself (ADR 13); dramatiq's consumers never read it.
REQUESTS_SUFFIX = ".requests"


@dataclass(frozen=True)
class QueueConfig:
    """What both sides of the queue transport need to agree on."""

    broker: BrokerKind = "redis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: Prefix of every Redis key (dramatiq's namespace); on RabbitMQ, of every queue name
    #: unless it is dramatiq's default. Tests use one of their own to see no one else's work.
    namespace: str = DEFAULT_NAMESPACE
    #: How long a request waits when its envelope has no deadline.
    request_timeout: float = 10.0
    #: How long a delivery waits for word from a worker before it counts as lost.
    ack_timeout: float = 30.0
    #: Attempts of a delivery by the worker (dramatiq retries) before it is dead-lettered.
    delivery_attempts: int = 8
    #: Backoff of those retries: first delay, and the longest, in seconds.
    min_backoff: float = 0.2
    max_backoff: float = 30.0
    #: How long a reply list outlives its last reply when its reader is gone.
    reply_ttl: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> QueueConfig:
        return cls(
            broker=settings.broker,
            redis_url=settings.redis_url,
            rabbitmq_url=settings.rabbitmq_url,
            namespace=namespace_setting(settings),
            request_timeout=settings.remote_timeout_seconds,
            ack_timeout=settings.delivery_ack_timeout_seconds,
            delivery_attempts=settings.delivery_attempts,
            min_backoff=settings.delivery_backoff_seconds,
        )

    # -- names --------------------------------------------------------------------------------

    def queue(self, module: str) -> str:
        """The queue of ``module``."""
        if self.broker == "rabbitmq" and self.namespace != DEFAULT_NAMESPACE:
            # RabbitMQ has no key namespace: the queue names carry it.
            return f"{self.namespace}.{module}"
        return module

    def request_queue(self, module: str) -> str:
        """Where requests to ``module`` go: on Redis its requests queue, read by the worker's
        event loop; on RabbitMQ its queue, where the ``cleave.request`` actor takes them."""
        if self.broker == "redis":
            return self.queue(module) + REQUESTS_SUFFIX
        return self.queue(module)

    def module_of(self, queue: str) -> str:
        """The module a queue belongs to (its dramatiq canonical name, without prefix)."""
        for suffix in (".DQ", ".XQ", REQUESTS_SUFFIX):
            queue = queue.removesuffix(suffix)
        prefix = f"{self.namespace}."
        if self.broker == "rabbitmq" and self.namespace != DEFAULT_NAMESPACE:
            return queue.removeprefix(prefix)
        return queue

    def reply_key(self, service: str) -> str:
        """A fresh reply list for one calling process."""
        return f"{self.namespace}:replies:{service}:{uuid.uuid4().hex}"

    def reasons_key(self, queue: str) -> str:
        """The hash of why each dead letter of ``queue`` was dead-lettered (dramatiq keeps
        the message, not the reason)."""
        return f"{self.namespace}:{queue}.XQ.reasons"


def namespace_setting(settings: Any) -> str:
    """``CLEAVE_QUEUE_NAMESPACE`` (``Settings.queue_namespace``)."""
    value = str(getattr(settings, "queue_namespace", "") or "")
    return value.strip() or DEFAULT_NAMESPACE

"""The dramatiq brokers of the queue transport, and a Redis consumer that does not poll.

dramatiq's Redis consumer looks for work with a Lua ``fetch`` and, when the queue is empty,
sleeps with a growing back-off up to the worker timeout: 4 ms at the median between a send and
the actor, more after a quiet spell. ``WakingRedisBroker`` keeps dramatiq's queue layout,
scripts, acks and dead letters as they are and changes only how an idle consumer waits: it
blocks on the queue list itself with ``BLMOVE q q LEFT LEFT`` (a rotation of the head onto
itself: the list does not change, the command returns as soon as it has an element), so a
consumer wakes when a message arrives, and the sender does nothing extra. A consumer whose
prefetch is full waits for one of its messages to be acked instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

from adapters.bus.redis.config import QueueConfig

log = logging.getLogger("cleave.queues")

#: How often a consumer of a delay queue (retries waiting for their time) looks for due
#: messages, in seconds: the delay of a retry is at least the minimum back-off, so this is
#: the precision of retries.
DELAY_POLL_SECONDS = 0.05
#: The longest a consumer blocks in one ``BLMOVE``: under redis-py's socket timeout (5 s by
#: default), which would otherwise end the wait with an error.
MAX_WAIT = 4.0
#: Without a heartbeat for this long, a worker counts as dead and its unacked messages go
#: back to their queue (dramatiq's default is 60 s). Long enough for the longest handler.
HEARTBEAT_TIMEOUT_MS = 30_000
#: Per million broker commands, how many also run dramatiq's maintenance (requeue what dead
#: workers held, expire old dead letters); dramatiq's default is 1,000. An idle worker issues
#: a few commands a second, so a killed worker's messages come back within minutes.
MAINTENANCE_CHANCE = 10_000


class WakingRedisBroker(RedisBroker):
    """dramatiq's ``RedisBroker`` whose consumers block until their queue has work."""

    #: Told (queue, dead letter id, reason) when a consumer dead-letters data that is not a
    #: dramatiq message at all (the worker records the reason for ``cleave dead-letters``).
    on_undecodable: Callable[[str, str, str], None] | None = None

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return WakingRedisConsumer

    def close(self) -> None:
        """Close the broker's connections (dramatiq's ``close`` leaves its pool open: its
        sockets were then closed, or not, by the garbage collector)."""
        super().close()
        self.client.connection_pool.disconnect()

    def queue_key(self, queue_name: str) -> str:
        """The Redis list of a queue's message ids (dramatiq's layout)."""
        return f"{self.namespace}:{queue_name}"

    def held_id(self, queue_name: str, data: bytes) -> str | None:
        """The id under which this worker holds fetched ``data`` that is no dramatiq message
        (so carries no id of its own): the one in its ack set of ``queue_name`` whose data
        it is; None if there is none."""
        held = f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"
        messages = f"{self.queue_key(queue_name)}.msgs"
        held_ids: set[bytes] = self.client.smembers(held)  # type: ignore[assignment]
        for redis_id in held_ids:
            if self.client.hget(messages, redis_id) == data:
                return redis_id.decode()
        return None

    def wait_and_fetch(
        self, queue_name: str, wait: float, count: int
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Block until the queue has a message (``wait`` seconds at most), then fetch up to
        ``count`` with dramatiq's script: one round trip, as Redis runs a blocked client's
        next pipelined command as soon as it unblocks. (Whether it woke, what it fetched.)"""
        key = self.queue_key(queue_name)
        script = self.scripts["dispatch"]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.blmove(key, key, wait, "LEFT", "LEFT")
            # EVALSHA itself: a Script object would make the pipeline ask SCRIPT EXISTS first.
            pipe.evalsha(script.sha, 1, self.namespace, *self.fetch_arguments(queue_name, count))
            try:
                woken, fetched = pipe.execute()
            except redis.exceptions.NoScriptError:
                # Redis lost its scripts (it restarted): load it again; the wait is over.
                script.sha = self.client.script_load(script.script)
                return None, self.do_fetch(queue_name, count)
        return woken, fetched

    def fetch_arguments(self, queue_name: str, count: int) -> list[str | int]:
        """What ``do_fetch`` passes to dramatiq's ``dispatch.lua`` (its header documents them:
        command, timestamp, queue, worker id, heartbeat timeout, dead message TTL, whether to
        run maintenance, largest unpack, then the command's own: how many to fetch)."""
        return self.dispatch_arguments("fetch", queue_name, count)

    def dispatch_arguments(
        self, command: str, queue_name: str, *args: str | int
    ) -> list[str | int]:
        """The arguments of ``dispatch.lua``'s ``command`` on ``queue_name``, as dramatiq's
        ``do_<command>`` builds them, for a caller that pipelines the script itself."""
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance(command),
            self._max_unpack_size(),
            *args,
        ]


class WakingRedisConsumer(_RedisConsumer):
    """Fetches like dramatiq's consumer; waits by blocking instead of sleeping."""

    broker: WakingRedisBroker

    def __init__(self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        self._key = broker.queue_key(queue_name)
        self._delayed = queue_name.endswith(".DQ")
        self._fetched_at = 0.0
        #: Set when a message is acked or rejected: a full consumer may fetch again.
        self._freed = threading.Event()

    def close(self) -> None:
        """Give back to the queue what was fetched and not handed out yet. dramatiq's
        consumer leaves it in this worker's ack set, where only the maintenance of a later
        fetch finds it, once this worker's heartbeat is older than the heartbeat timeout: a
        stopped worker would hold a message for 30 s or more."""
        cached, self.message_cache = self.message_cache, []
        held = []
        for data in cached:
            try:
                held.append(str(Message.decode(data).options["redis_message_id"]))
            except (DecodeError, KeyError, TypeError):
                continue  # not a dramatiq message: maintenance returns it, the next one rejects it
        try:
            if held:
                self.broker.do_requeue(self.queue_name, *held)
        except redis.RedisError as error:
            log.warning(
                "queue %s: could not give back %d messages: %s", self.queue_name, len(held), error
            )
        super().close()

    def ack(self, message: MessageProxy) -> None:
        try:
            super().ack(message)
        finally:
            self._freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self._freed.set()

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    proxy = self._next_cached()
                    if proxy is not None:
                        return proxy
                    continue
                self._freed.clear()
                if self.outstanding_message_count >= self.prefetch:
                    # Every slot is taken: wait until a message is done, not a fixed time.
                    self._freed.wait(self.timeout / 1000)
                    return None
                count = self.prefetch - self.outstanding_message_count
                if not self._delayed:
                    # Block until the queue has a message (at once when it has one already),
                    # then fetch. An idle consumer fetches once per timeout all the same: the
                    # fetch keeps its heartbeat, and runs maintenance.
                    wait = min(self.timeout / 1000, MAX_WAIT)
                    _, self.message_cache = self.broker.wait_and_fetch(self.queue_name, wait, count)
                    if not self.message_cache:
                        # Back to the consumer thread, which looks whether it should stop.
                        return None
                    continue
                # A delay queue: retries wait for their time in the consumer thread's memory,
                # which moves them to their queue when it gets control back. Come back soon.
                woken = self.broker.client.blmove(
                    self._key, self._key, DELAY_POLL_SECONDS, "LEFT", "LEFT"
                )
                now = time.monotonic()
                if woken is None and now - self._fetched_at < self.timeout / 1000:
                    return None
                self._fetched_at = now
                self.message_cache = self.broker.do_fetch(self.queue_name, count)
                if not self.message_cache:
                    return None
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # A stalled Redis is a lost one for the consumer thread: it reconnects.
            raise ConnectionClosed(error) from None

    def _next_cached(self) -> MessageProxy | None:
        data = self.message_cache.pop(0)
        if data is None:
            return None  # dramatiq's #266: an id without data; nothing to process
        try:
            message = Message.decode(data)
        except DecodeError as error:
            # dramatiq's consumer would stop on it (and restart after a pause, losing what
            # it had prefetched); dead-letter it and go on with the next one.
            self._reject_undecodable(data, error)
            return None
        self.queued_message_ids.add(message.message_id)
        return MessageProxy(message)

    def _reject_undecodable(self, data: bytes, error: Exception) -> None:
        broker = self.broker
        identifier = broker.held_id(self.queue_name, data)
        if identifier is None:
            log.error("queue %s: dropped an undecodable message it could not find", self.queue_name)
            return
        broker.do_nack(self.queue_name, identifier)
        log.error(
            "queue %s: dead-lettered message %s, not a dramatiq message: %s",
            self.queue_name,
            identifier,
            error,
        )
        if broker.on_undecodable is not None:
            broker.on_undecodable(self.queue_name, identifier, f"not a dramatiq message: {error}")


def make_broker(config: QueueConfig, middleware: list[Middleware] | None = None) -> Broker:
    """The broker of ``config`` with exactly ``middleware`` (none: a sender only)."""
    if config.broker == "rabbitmq":
        return RabbitmqBroker(url=config.rabbitmq_url, middleware=middleware or [])
    return WakingRedisBroker(
        url=config.redis_url,
        namespace=config.namespace,
        middleware=middleware or [],
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )

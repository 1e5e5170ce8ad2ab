"""The calling side of the queue transport.

One ``QueueClient`` per process: the broker it sends through and the reply list its answers
come back on. One ``QueueTransport`` per remote module: a command or query becomes a
``cleave.request`` message on the module's queue and the call waits for its reply; an event
or deferred command becomes a ``cleave.deliver`` message and the relay's call waits for what
the worker says about it:

* ``ok``: handled; the relay removes the record from the outbox;
* ``retrying`` in d seconds (dramatiq's Retries scheduled another attempt): wait d more;
* ``dead``: dramatiq dead-lettered it (a final error, or its attempts ran out); the record
  leaves the outbox, the message is in the broker's dead letters (``cleave dead-letters``);
* no word for ``ack_timeout``: the worker died or Redis lost it; ``Unavailable``, and the
  relay sends it again later (the receiving inbox drops a repeat).

Because the relay waits for the final outcome before it sends the next record of a partition,
deliveries that share a partition key are handled in order, as on every other transport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis
from dramatiq import Broker
from dramatiq import Message as QueueMessage
from dramatiq.errors import BrokerError

from adapters.bus.redis.broker import make_broker
from adapters.bus.redis.config import DELIVER_ACTOR, REQUEST_ACTOR, QueueConfig
from adapters.bus.redis.replies import Outcome, ReplyListener
from kernel.bus import Call
from kernel.codec import Codec
from kernel.errors import Unavailable
from kernel.messages import Envelope, Message

log = logging.getLogger("cleave.queues")

_SEND_ERRORS = (redis.RedisError, BrokerError, OSError)


class QueueClient:
    """The broker and the reply list of one calling process."""

    def __init__(self, config: QueueConfig, service: str, *, broker: Broker | None = None) -> None:
        self.config = config
        self.service = service
        self.broker = broker or make_broker(config)
        self.reply_key = config.reply_key(service)
        self._listener = ReplyListener(config.redis_url, self.reply_key, self._on_outcome)
        self._waiting: dict[str, asyncio.Future[Outcome] | asyncio.Queue[Outcome]] = {}
        #: Sends running on threads: a cancelled caller does not stop its thread, which must
        #: be done with the broker's connections before ``close`` closes them.
        self._sending: set[asyncio.Future[Any]] = set()
        self._closed = False
        #: Where ``broker.enqueue`` (a blocking round trip) runs. Measured
        #: (bench/redis_transport.py, ADR 13): a request is answered soonest when it is
        #: enqueued right on the event loop (a thread hop costs about as much as the round
        #: trip); deliveries, sent 64 at a time by a relay, go 1.1 to 1.3x faster from
        #: threads, whose round trips overlap, than one after another on a blocked loop.
        #: (On RabbitMQ each of those threads keeps a connection of its own: pika's are
        #: per thread.)
        self.requests_offloaded = False
        self.deliveries_offloaded = True
        #: On Redis, requests go to the module's requests queue, which the worker's event
        #: loop reads itself (ADR 13); off, to the ``cleave.request`` actor on the module's
        #: queue (bench/redis_transport.py compares the two).
        self.requests_on_loop = config.broker == "redis"

    def request_queue(self, module: str) -> str:
        """The queue a command or query to ``module`` goes to."""
        if self.requests_on_loop:
            return self.config.request_queue(module)
        return self.config.queue(module)

    @classmethod
    def from_settings(cls, settings: Any, service_name: str) -> QueueClient:
        return cls(QueueConfig.from_settings(settings), service_name)

    async def alive(self) -> bool:
        """Whether the broker answers (the health of every module reached through it)."""
        client = getattr(self.broker, "client", None)
        try:
            if client is not None:
                return bool(await asyncio.to_thread(client.ping))
            connection = getattr(self.broker, "connection", None)  # RabbitMQ
            return bool(connection is not None and connection.is_open)
        except _SEND_ERRORS:
            return False

    async def close(self) -> None:
        """Stop reading replies and release the connections. Idempotent."""
        self._closed = True
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=5.0)
        await self._listener.stop()
        for waiting in self._waiting.values():
            if isinstance(waiting, asyncio.Future) and not waiting.done():
                waiting.set_exception(Unavailable("the queue transport is closed"))
        self._waiting.clear()
        self.broker.close()  # its connections too (WakingRedisBroker.close)

    # -- sending ----------------------------------------------------------------------------

    async def _send(self, message: QueueMessage[Any], offload: bool) -> None:
        if self._closed:
            raise Unavailable("the queue transport is closed")
        self._listener.start()
        try:
            if offload:
                sending = asyncio.ensure_future(asyncio.to_thread(self.broker.enqueue, message))
                self._sending.add(sending)
                sending.add_done_callback(self._sent)
                await asyncio.shield(sending)
            else:
                self.broker.enqueue(message)
        except _SEND_ERRORS as error:
            raise Unavailable(
                f"cannot enqueue on {message.queue_name}: {type(error).__name__}: {error}"
            ) from error

    def _sent(self, sending: asyncio.Future[Any]) -> None:
        self._sending.discard(sending)
        if not sending.cancelled():
            sending.exception()  # retrieved: a caller that left no longer awaits it

    async def request(self, queue: str, frame: str, within: float, what: str) -> Outcome:
        """Send a command or query and wait up to ``within`` seconds for its reply."""
        window = max(1, int(within * 1000))
        message: QueueMessage[Any] = QueueMessage(
            queue_name=queue,
            actor_name=REQUEST_ACTOR,
            args=(frame,),
            kwargs={},
            options={
                "reply_to": self.reply_key,
                # Not worth starting once the caller stopped waiting (AgeLimit), nor running
                # for longer than that (TimeLimit); and never twice (no retries).
                "max_age": window,
                "time_limit": window,
                "max_retries": 0,
            },
        )
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = answer
        try:
            # asyncio.timeout, not wait_for: no task of its own per call (3.11).
            async with asyncio.timeout(within):
                await self._send(message, self.requests_offloaded)
                return await answer
        except TimeoutError:
            raise Unavailable(
                f"{what} to {queue}: no answer within {within:.2f}s", code="deadline"
            ) from None
        finally:
            self._waiting.pop(message.message_id, None)

    async def deliver(self, queue: str, module: str, frame: str, what: str) -> Outcome:
        """Send an event or deferred command and wait for the worker's final word."""
        message: QueueMessage[Any] = QueueMessage(
            queue_name=queue,
            actor_name=DELIVER_ACTOR,
            args=(module, frame),
            kwargs={},
            options={"reply_to": self.reply_key},
        )
        outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self._waiting[message.message_id] = outcomes
        patience = self.config.ack_timeout
        try:
            await self._send(message, self.deliveries_offloaded)
            while True:
                try:
                    async with asyncio.timeout(patience):
                        outcome = await outcomes.get()
                except TimeoutError:
                    raise Unavailable(
                        f"{what} to {module}: no word from a worker within {patience:.1f}s"
                    ) from None
                if outcome.kind != "retrying":
                    return outcome
                patience = outcome.delay + self.config.ack_timeout
        finally:
            self._waiting.pop(message.message_id, None)

    def _on_outcome(self, outcome: Outcome) -> None:
        waiting = self._waiting.get(outcome.id)
        if waiting is None:
            # Its caller gave up (timeout) or it answers a replayed dead letter.
            log.debug("outcome %s of %s came after its caller left", outcome.kind, outcome.id)
        elif isinstance(waiting, asyncio.Queue):
            waiting.put_nowait(outcome)
        elif not waiting.done():
            waiting.set_result(outcome)


class QueueTransport:
    """Reaches one remote module through its queue."""

    def __init__(self, client: QueueClient, codec: Codec, module: str) -> None:
        if codec.format != "json":
            raise ValueError("the queue transport carries JSON frames")
        self.client = client
        self.codec = codec
        self.module = module
        self.queue = client.config.queue(module)

    def requester(self, module: str, message: type[Message]) -> Call:
        client, queue = self.client, self.client.request_queue(module)
        encode, decode = self.codec.encode, self.codec.decode_reply
        timeout = client.config.request_timeout

        async def call(message: Message, envelope: Envelope) -> Any:
            now = time.time()
            within = (envelope.deadline - now) if envelope.deadline else timeout
            if within <= 0:
                raise Unavailable(
                    f"{envelope.name} to {module}: the deadline passed before it was sent",
                    code="deadline",
                )
            frame = encode(envelope, message).decode()
            outcome = await client.request(queue, frame, within, envelope.name)
            return decode(outcome.reply, type(message))

        return call

    def deliverer(self, module: str) -> Call:
        client, queue, encode = self.client, self.client.config.queue(module), self.codec.encode

        async def call(message: Message, envelope: Envelope) -> None:
            frame = encode(envelope, message).decode()
            outcome = await client.deliver(queue, module, frame, envelope.name)
            if outcome.kind == "dead":
                # The broker holds it now, with its reason; the record leaves the outbox.
                log.error(
                    "%s to %s is in the broker's dead letters: %s (cleave dead-letters list)",
                    envelope.name,
                    module,
                    outcome.reason,
                )

        return call

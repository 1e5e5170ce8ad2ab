"""Requests on the worker's event loop: the latency-sensitive path of the Redis transport.

A caller waits for every command or query it sends, so on Redis a request goes to a queue of
its own, ``<module>.requests``, which the worker process's event loop reads itself, instead of
dramatiq's consumer thread handing it to a worker thread that hands it to the loop: the two
hand-overs cost 0.4 ms of a 1.1 to 2 ms round trip (measured, ADR 13). The queue is still
dramatiq's: the caller enqueues a ``dramatiq.Message`` with the broker's ``enqueue``, and the
loop fetches, acks and recovers with dramatiq's own ``dispatch.lua`` (fetched ids wait in the
worker's ack set; a worker that dies leaves them there, and dramatiq's maintenance puts them
back on the queue once its heartbeat is old). What this path does in place of dramatiq's
middleware, for requests only (they are never retried):

* AgeLimit: a request older than its ``max_age`` (its caller's deadline passed) is acked and
  dropped with a log line, as the actor path does;
* TimeLimit: the handler runs under ``asyncio.timeout(time_limit)``; past it, or cut off by a
  stopping worker, the caller is answered ``Unavailable``;
* dead letters: what this path cannot read (not a dramatiq message, not ``cleave.request`` of
  one frame, a frame the receiver calls poison) is moved, as it came, onto the module's queue,
  where dramatiq's consumer and the ``cleave.request`` actor answer it and dead-letter it with
  its reason, exactly as before this path existed.

The reply goes out first, then the ack: the ack comes after the handler returned, so after
its unit of work committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

import msgspec
import redis
import redis.asyncio
from dramatiq import Message
from dramatiq.common import current_millis
from dramatiq.errors import DecodeError

from adapters.bus.redis.config import REQUEST_ACTOR, REQUESTS_SUFFIX
from adapters.bus.redis.replies import Outcome
from kernel.errors import POISON, Unavailable, WireError

if TYPE_CHECKING:
    from adapters.bus.redis.actors import WorkerHost
    from adapters.bus.redis.broker import WakingRedisBroker

log = logging.getLogger("cleave.queues.requests")

#: How many requests one worker process runs at once on its loop. A request holds no thread,
#: only a task: a client waiting for its order (``GetOrder(wait_seconds=...)``) costs little.
MAX_IN_FLIGHT = 64
#: The most one fetch takes: several worker processes of a module share a burst.
FETCH_BATCH = 8
#: The longest one blocking wait lasts: how soon a stopping worker stops taking requests.
WAIT_SECONDS = 0.5


class _ErrorOnly(msgspec.Struct):
    error: WireError | None = None


_error_of = msgspec.json.Decoder(_ErrorOnly).decode


class RequestLane:
    """Takes the requests of a worker's modules on the event loop and answers them."""

    def __init__(
        self, broker: WakingRedisBroker, host: WorkerHost, queues: Collection[str], url: str
    ) -> None:
        self.broker = broker
        self.url = url
        self.host = host
        self.queues = [queue + REQUESTS_SUFFIX for queue in sorted(queues)]
        self._client: redis.asyncio.Redis | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._taking = False

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start reading the requests queues (on the running loop)."""
        # No socket timeout: each wait is bounded by its own (WAIT_SECONDS), and with one
        # redis.asyncio wraps every send in asyncio.wait_for, a task per command (profiled:
        # that was most of the loop's CPU per request).
        self._client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=2)
        self._taking = True
        self._room.set()
        self._readers = [
            asyncio.create_task(self._read(queue), name=f"requests:{queue}")
            for queue in self.queues
        ]

    def stop_taking(self) -> None:
        """Take no more requests (SIGTERM): what is on the queue stays there for the others.
        Safe from any thread."""
        self._taking = False

    async def stop(self, grace: float) -> None:
        """Stop taking requests; let those running finish within ``grace`` seconds, then
        cut them off (their callers are answered ``Unavailable``)."""
        self._taking = False
        self._room.set()
        if self._readers:
            await asyncio.wait(self._readers, timeout=WAIT_SECONDS + 2)
            for reader in self._readers:
                reader.cancel()
            self._readers = []
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- taking -----------------------------------------------------------------------------

    async def _read(self, queue: str) -> None:
        failures = 0
        while self._taking:
            free = MAX_IN_FLIGHT - len(self._running)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                fetched = await self._wait_and_fetch(queue, min(free, FETCH_BATCH))
                failures = 0
            except (redis.RedisError, OSError) as error:
                # Redis is away: callers time out meanwhile; take again when it is back.
                failures += 1
                if failures == 1:
                    log.warning("cannot take requests from %s: %s; retrying", queue, error)
                await asyncio.sleep(min(0.05 * failures, 1.0))
                continue
            for data in fetched:
                if data is None:
                    continue  # dramatiq's #266: an id without data
                task = asyncio.create_task(self._run(queue, data))
                self._running.add(task)
                task.add_done_callback(self._done)
            if fetched:
                # Let them run up to their first wait (a quick query: up to its answer)
                # before the next fetch is sent: measured, the answer leaves sooner.
                await asyncio.sleep(0)

    async def _wait_and_fetch(self, queue: str, count: int) -> list[bytes | None]:
        """Block until the queue has a request, then fetch with dramatiq's script: one round
        trip, as ``WakingRedisBroker.wait_and_fetch`` does on the consumer thread."""
        assert self._client is not None
        broker = self.broker
        key = broker.queue_key(queue)
        script = broker.scripts["dispatch"]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.blmove(key, key, WAIT_SECONDS, "LEFT", "LEFT")
            pipe.evalsha(script.sha, 1, broker.namespace, *broker.fetch_arguments(queue, count))
            try:
                _, fetched = await pipe.execute()
            except redis.exceptions.NoScriptError:
                # Redis lost its scripts (it restarted): load it again, fetch next turn.
                script.sha = await self._client.script_load(script.script)
                return []
        return list(fetched or ())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("a request failed on the loop: %r", task.exception())

    # -- answering --------------------------------------------------------------------------

    async def _run(self, queue: str, data: bytes) -> None:
        try:
            message = Message.decode(data)
        except DecodeError:
            redis_id = self.broker.held_id(queue, data)
            if redis_id is None:
                log.error("queue %s: dropped an undecodable request it could not find", queue)
            else:
                self._move_to_module_queue(queue, redis_id, data, "not a dramatiq message")
            return
        options = message.options
        redis_id = str(options.get("redis_message_id") or message.message_id)
        args = message.args
        if message.actor_name != REQUEST_ACTOR or len(args) != 1 or not isinstance(args[0], str):
            self._move_to_module_queue(
                queue, redis_id, _moved(message, queue), "not one cleave.request frame"
            )
            return
        max_age = options.get("max_age")
        if max_age and message.message_timestamp + int(max_age) < current_millis():
            log.warning("dropped request %s: its caller's deadline had passed", message.message_id)
            await self._answer(queue, redis_id, None, message.message_id, b"")
            return
        receiver = self.host.receiver
        if receiver is None:
            return  # not started, or stopped: left unacked, it comes back to the queue
        limit = options.get("time_limit")
        try:
            async with asyncio.timeout(int(limit) / 1000 if limit else None):
                reply = await receiver.request(args[0].encode())
        except (TimeoutError, asyncio.CancelledError) as error:
            # Past its time limit, or cut off by a stopping worker: never run twice, so answer.
            what = "ran past its deadline" if isinstance(error, TimeoutError) else "was stopped"
            log.warning("request %s %s", message.message_id, what)
            reply = receiver.codec.encode_error(Unavailable(f"the worker {what}"))
        if _is_poison(reply):
            # Not this path's to answer: dramatiq's actor answers it and keeps the dead letter.
            self._move_to_module_queue(queue, redis_id, _moved(message, queue), "poison frame")
            return
        await self._answer(queue, redis_id, options.get("reply_to"), message.message_id, reply)

    async def _answer(
        self, queue: str, redis_id: str, reply_to: str | None, message_id: str, reply: bytes
    ) -> None:
        """Push the reply, then ack the request: the ack only after the answer is out.

        Both go in one blocking round trip on the loop (``ReplyPusher.push_now``), the ack
        after the reply: Redis wakes the caller on the push, before it runs the ack. Measured
        (bench/redis_transport.py): an awaited redis.asyncio pipeline of both took 0.6 ms to
        reach the caller, the reply alone then an awaited ack 0.35 ms but a second round trip
        of loop time per request; this is one round trip and no awaited one."""
        assert self._client is not None
        broker = self.broker
        script = broker.scripts["dispatch"]
        ack = broker.dispatch_arguments("ack", queue, redis_id)
        if reply_to:
            outcome = Outcome(id=message_id, kind="reply", reply=msgspec.Raw(reply))
            acked = self.host.pusher.push_now(
                reply_to, outcome, then=("EVALSHA", script.sha, 1, broker.namespace, *ack)
            )
            if not isinstance(acked, Exception):
                return
            # Redis lost its scripts, or is away: the ack on its own, below.
        try:
            await self._client.evalsha(script.sha, 1, broker.namespace, *ack)
        except redis.exceptions.NoScriptError:
            broker.do_ack(queue, redis_id)  # dramatiq's Script loads it again
        except (redis.RedisError, OSError) as error:
            # Unacked, it comes back after the heartbeat timeout, stale: AgeLimit drops it.
            log.warning("could not ack request %s: %s", message_id, error)

    def _move_to_module_queue(self, queue: str, redis_id: str, data: bytes, why: str) -> None:
        """Hand what this path cannot answer to dramatiq's consumer of the module's queue,
        as it came (the same message id), then ack it here."""
        module_queue = queue.removesuffix(REQUESTS_SUFFIX)
        log.warning("request %s on %s: %s; moved to queue %s", redis_id, queue, why, module_queue)
        try:
            self.broker.do_enqueue(module_queue, redis_id, data)
            self.broker.do_ack(queue, redis_id)
        except redis.RedisError as error:
            log.error("could not move request %s to %s: %s", redis_id, module_queue, error)


def _moved(message: Message[object], queue: str) -> bytes:
    """``message`` as it goes to its module's queue (where its dead letter is filed)."""
    return message.copy(queue_name=queue.removesuffix(REQUESTS_SUFFIX)).encode()


def _is_poison(reply: bytes) -> bool:
    try:
        error = _error_of(reply).error
    except msgspec.DecodeError:
        return False
    return error is not None and error.kind == POISON

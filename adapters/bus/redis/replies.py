"""Answers from workers to callers: one Redis list per calling process, read with BLPOP.

A worker pushes each outcome (``RPUSH`` + ``EXPIRE``, one round trip) onto the list named in
the message's ``reply_to`` option; the calling process has one task blocked on ``BLPOP`` that
hands each outcome to whoever waits for it, by the id of the dramatiq message it answers.
Replies therefore never pay a consumer's polling, and a process needs one connection for all
its waiting calls (dramatiq's results backend blocks one connection per waiting call).

The list expires ``reply_ttl`` after its last outcome, so the replies of a process that died
do not stay in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec
import redis
import redis.asyncio

log = logging.getLogger("cleave.queues.replies")

OutcomeKind = Literal["reply", "ok", "retrying", "dead"]


class Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a worker says about one message it took.

    * ``reply``: the answer to a command or query (the ``Receiver``'s reply, in ``reply``);
    * ``ok``: an event or deferred command was handled (its unit of work committed);
    * ``retrying``: it failed; dramatiq tries again in ``delay`` seconds;
    * ``dead``: it failed for good and is in the broker's dead letters, because ``reason``.
    """

    id: str
    kind: OutcomeKind
    reply: msgspec.Raw = msgspec.Raw(b"null")
    delay: float = 0.0
    reason: str = ""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Outcome).decode

#: How many outcomes one read takes after the first (under load, one round trip for many).
_BATCH = 128
#: The longest one BLPOP waits: how soon a stopping reader notices (and well under
#: redis-py's 5 s socket timeout).
_WAIT = 0.5


def encode_outcome(outcome: Outcome) -> bytes:
    return _encode(outcome)


class ReplyListener:
    """The one reader of a process's reply list."""

    def __init__(self, url: str, key: str, deliver: Callable[[Outcome], None]) -> None:
        self.key = key
        self._url = url
        self._deliver = deliver
        self._client: redis.asyncio.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start reading in the running loop. Outcomes pushed before the first read wait in
        the list: nothing is missed."""
        if self._task is not None:
            return
        # No socket timeout: a BLPOP waits up to its own timeout.
        self._client = redis.asyncio.Redis.from_url(self._url, socket_connect_timeout=2)
        self._task = asyncio.create_task(self._read(), name=f"replies:{self.key}")

    async def stop(self) -> None:
        """Stop reading. Bounded: redis-py may not give up a blocked BLPOP when cancelled
        (it awaits the connection's release in a ``finally``), so the reader is asked to
        stop at its next turn (BLPOP waits at most ``_WAIT``) and only cancelled after."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            _, pending = await asyncio.wait({task}, timeout=_WAIT + 1.0)
            if pending:
                task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.delete(self.key)
                    await client.aclose()

    async def _read(self) -> None:
        assert self._client is not None
        client, key = self._client, self.key
        failures = 0
        while not self._stopping:
            try:
                found = await client.blpop([key], timeout=_WAIT)
                if found is None:
                    continue
                self._hand_over(found[1])
                # Under load more have come meanwhile: one round trip for all of them.
                for item in await client.lpop(key, _BATCH) or ():
                    self._hand_over(item)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                # Redis is away: callers time out meanwhile; read again when it is back.
                failures += 1
                if failures == 1:
                    log.warning("cannot read replies from %s: %s; retrying", self.key, error)
                await asyncio.sleep(min(0.05 * failures, 1.0))

    def _hand_over(self, item: Any) -> None:
        try:
            outcome = _decode(item)
        except msgspec.DecodeError:
            log.error("dropped an unreadable reply on %s: %r", self.key, item[:200])
            return
        self._deliver(outcome)


class ReplyPusher:
    """Pushes outcomes from a worker (actors on the event loop, middleware hooks on worker
    threads): one thread-safe connection pool, made with the pusher (redis-py connects on
    the first command), so that threads never race to make it."""

    def __init__(self, url: str, ttl: float) -> None:
        self._url = url
        self._ttl = max(1, int(ttl))
        self._sync = redis.Redis.from_url(url, socket_timeout=5)
        self._closed = False

    async def push(self, key: str, outcome: Outcome) -> None:
        """Best effort: a lost outcome makes the caller time out (a request) or send the
        delivery again later, which the receiving inbox drops.

        Synchronous on purpose, although called from the event loop: measured, one blocking
        round trip (~0.1 ms) holds the loop for less time than redis.asyncio spends on the
        loop's own thread to do the same, and answers sooner (bench/redis_transport.py).
        """
        self.push_now(key, outcome)

    def push_now(self, key: str, outcome: Outcome, then: Sequence[Any] = ()) -> Any:
        """``push`` from any thread (dramatiq's middleware hooks run on worker threads).

        ``then``: one more command sent in the same round trip, after the push (a worker acks
        the request it answered); its result, or its error, is returned."""
        try:
            if self._closed:
                # Late (the worker is stopping): a connection of its own, closed after.
                with redis.Redis.from_url(self._url, socket_timeout=5) as client:
                    return self._push(client, key, outcome, then)
            return self._push(self._sync, key, outcome, then)
        except (redis.RedisError, OSError) as error:
            log.warning("could not answer %s on %s: %s", outcome.id, key, error)
            return error

    def _push(self, client: redis.Redis, key: str, outcome: Outcome, then: Sequence[Any]) -> Any:
        with client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, encode_outcome(outcome))
            pipe.expire(key, self._ttl)
            if then:
                pipe.execute_command(*then)
            results = pipe.execute(raise_on_error=False)
        if isinstance(results[0], Exception):
            log.warning("could not answer %s on %s: %s", outcome.id, key, results[0])
        return results[2] if then else None

    def ping(self) -> bool:
        """Whether Redis answers (a worker's readiness: without it, nobody hears back)."""
        try:
            return not self._closed and bool(self._sync.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the pool; an outcome pushed after this goes on a connection of its own."""
        self._closed = True
        self._sync.close()

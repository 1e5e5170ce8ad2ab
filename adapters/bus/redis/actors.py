"""The two actors of every module queue, around the process's ``Receiver``.

``cleave.request(frame)`` runs a command or query and pushes the reply (a typed error is an
answer too) to the caller's reply list. ``cleave.deliver(module, frame)`` delivers an event or
deferred command: handled, it pushes ``ok``; a retryable failure raises ``Retryable`` so that
dramatiq's Retries middleware tries again; a final one (a domain refusal, a poison frame)
raises ``Final``, which is never retried: dramatiq dead-letters it at once.

The actors are plain functions on dramatiq's worker threads: they read their message's
options (``reply_to``) through the CurrentMessage middleware, which an ``async def`` actor
could not (it runs on the event loop thread, in another context), and then run the async part
on the AsyncIO middleware's loop, as dramatiq does for async actors.

A request that takes longer than ``REQUEST_HOLD_SECONDS`` (a client waiting for its order to
settle, ``GetOrder(wait_seconds=...)``) lets go of its worker thread and finishes on the loop,
bounded by its deadline: otherwise a few waiting clients would hold every thread, and the
deliveries that settle their orders would wait behind them. Its message is acked then; a
request is never run twice anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

import msgspec
from dramatiq import Actor, Broker, Retry
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import CurrentMessage, Interrupt

from adapters.bus.redis.config import DELIVER_ACTOR, REQUEST_ACTOR
from adapters.bus.redis.replies import Outcome, ReplyPusher
from kernel.errors import POISON, PoisonMessage, WireError, error_from_wire
from kernel.receiver import Receiver

log = logging.getLogger("cleave.queues.worker")

#: Requests go before deliveries in a worker's queue of prefetched messages (dramatiq runs
#: the lowest priority number first): a caller is waiting for them.
REQUEST_PRIORITY = 0
DELIVERY_PRIORITY = 10
#: How long a request keeps its worker thread before it finishes on the loop alone.
REQUEST_HOLD_SECONDS = 0.5
#: How long a stopping worker lets requests still running on the loop finish.
DETACHED_GRACE_SECONDS = 5.0


class Final(Exception):
    """It can never succeed: dead-letter it now (the actors' ``throws``: Retries does not
    retry it, and dramatiq logs it without a traceback)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retryable(Retry):
    """It may succeed later: Retries tries again (a ``Retry``: logged without a traceback,
    as the failure is the handler's and already logged by the receiver)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeepTrying(Retryable):
    """A compensation that failed for now (``Message.retry_forever``): retried whatever the
    attempt count, never dead-lettered for a transient failure."""


class Hosted(Protocol):
    """The runtime of the modules this worker hosts (``entrypoints.worker`` builds it)."""

    async def start(self) -> Receiver:
        """Start the runtime; the receiving side of its hosted modules."""
        ...

    async def stop(self) -> None: ...

    async def checks(self) -> dict[str, bool]:
        """Readiness checks by name (runtime running, databases answering)."""
        ...


class Lane(Protocol):
    """Requests taken on the loop, outside dramatiq's threads (``requests.RequestLane``)."""

    def start(self) -> None: ...

    def stop_taking(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class _ErrorOnly(msgspec.Struct):
    error: WireError | None = None


_error_of = msgspec.json.Decoder(_ErrorOnly).decode


class WorkerHost:
    """What the actors do, on the event loop; one per worker process."""

    def __init__(self, hosted: Hosted, modules: Collection[str], pusher: ReplyPusher) -> None:
        self.hosted = hosted
        self.modules = frozenset(modules)
        self.pusher = pusher
        self.receiver: Receiver | None = None
        #: Requests that let go of their worker thread and still run on the loop.
        self.detached: set[concurrent.futures.Future[None]] = set()
        #: On Redis, what takes requests on the loop itself (``requests.RequestLane``).
        self.lane: Lane | None = None

    async def start(self) -> None:
        self.receiver = await self.hosted.start()
        if self.lane is not None:
            self.lane.start()

    def stop_taking(self) -> None:
        """Take no more requests on the loop (a stopping worker; any thread)."""
        if self.lane is not None:
            self.lane.stop_taking()

    async def stop(self) -> None:
        try:
            if self.lane is not None:
                await self.lane.stop(DETACHED_GRACE_SECONDS)
            pending = [asyncio.wrap_future(future) for future in self.detached]
            if pending:
                _, late = await asyncio.wait(pending, timeout=DETACHED_GRACE_SECONDS)
                for future in late:
                    future.cancel()
            await self.hosted.stop()
        finally:
            self.receiver = None
            await self.pusher.close()

    def _receiver(self) -> Receiver:
        if self.receiver is None:
            raise Retryable("the worker's runtime is not running")
        return self.receiver

    async def request(self, args: tuple[Any, ...], message_id: str, reply_to: str | None) -> None:
        receiver = self._receiver()
        if len(args) == 1 and isinstance(args[0], str):
            reply = await receiver.request(args[0].encode())
        else:
            reply = receiver.codec.encode_error(
                PoisonMessage(f"{REQUEST_ACTOR} takes one frame, not {_shape(args)}")
            )
        if reply_to:
            await self.pusher.push(
                reply_to, Outcome(id=message_id, kind="reply", reply=_raw(reply))
            )
        error = _error(reply)
        if error is not None and error.kind == POISON:
            # Answered, and kept: a frame this process cannot read comes from a process of
            # another version, which the operator needs to see.
            raise Final(error.detail)

    async def deliver(self, args: tuple[Any, ...], message_id: str, reply_to: str | None) -> None:
        receiver = self._receiver()
        if len(args) != 2 or not all(isinstance(arg, str) for arg in args):
            raise Final(f"{DELIVER_ACTOR} takes a module and a frame, not {_shape(args)}")
        module, frame = args
        if module not in self.modules:
            raise Final(f"module {module!r} does not run in this worker")
        error = _error(await receiver.deliver(module, frame.encode()))
        if error is None:
            return  # the actor's thread tells the caller, off the loop (declare_actors)
        # Classified as the relay classifies a failed delivery (kernel/relay.py).
        failure = error_from_wire(error)
        if isinstance(failure, PoisonMessage):
            raise Final(failure.reason)
        if not failure.retryable:
            raise Final(f"{error.kind}: {error.detail} (final)")
        if _retries_forever(receiver, frame):
            raise KeepTrying(f"{error.kind}: {error.detail}")
        raise Retryable(f"{error.kind}: {error.detail}")


def _retries_forever(receiver: Receiver, frame: str) -> bool:
    try:
        envelope, _ = receiver.codec.decode(frame.encode())
    except PoisonMessage:
        return False
    cls = receiver.codec.message_type(envelope.name)
    return cls is not None and cls.retry_forever


def _error(reply: bytes) -> WireError | None:
    try:
        return _error_of(reply).error
    except msgspec.DecodeError:
        return WireError(kind="Internal", detail=f"unreadable reply {reply[:100]!r}")


def _raw(reply: bytes) -> msgspec.Raw:
    return msgspec.Raw(reply)


def _shape(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(type(arg).__name__ for arg in args) + ")"


def declare_actors(
    broker: Broker,
    host: WorkerHost,
    queues: Collection[str],
    *,
    attempts: int,
    delivery_time_limit_ms: int,
) -> None:
    """Declare ``cleave.request`` and ``cleave.deliver`` and every hosted module's queue.

    One actor serves every queue: dramatiq finds the actor by the message's actor name, and
    the queue only says which consumer fetched it.
    """
    first, *others = sorted(queues)

    def run(
        call: Callable[[tuple[Any, ...], str, str | None], Awaitable[None]], *, ok: bool
    ) -> Any:
        def actor(*args: Any, **kwargs: Any) -> None:
            message = CurrentMessage.get_current_message()
            assert message is not None, "the CurrentMessage middleware is required"
            if kwargs:
                args = (*args, kwargs)  # refused as the wrong shape
            loop = get_event_loop_thread()
            assert loop is not None, "the AsyncIO middleware is required"
            reply_to = message.options.get("reply_to")
            if not ok:
                limit = message.options.get("time_limit")
                coroutine = call(args, message.message_id, reply_to)
                _hold_or_detach(host, loop.loop, _bounded(coroutine, limit))
                return
            loop.run_coroutine(call(args, message.message_id, reply_to))
            if reply_to:
                # Handled: said from this thread, not the loop's. Measured: on the loop, the
                # round trip stalled every other message of the process; here the worker
                # threads overlap theirs (bench/redis_transport.py). A request's reply is
                # pushed on the loop instead, where it reaches its caller soonest.
                host.pusher.push_now(reply_to, Outcome(id=message.message_id, kind="ok"))

        return actor

    def never(retries: int, error: BaseException) -> bool:
        # A command is never run twice by the transport.
        return False

    def retry_delivery(retries: int, error: BaseException) -> bool:
        # ``retries``: how many attempts failed before this one.
        if isinstance(error, KeepTrying):
            return True
        return not isinstance(error, Final) and retries + 1 < attempts

    Actor(
        run(host.request, ok=False),
        broker=broker,
        actor_name=REQUEST_ACTOR,
        queue_name=first,
        priority=REQUEST_PRIORITY,
        options={"retry_when": never, "max_retries": 0, "throws": (Final,)},
    )
    Actor(
        run(host.deliver, ok=True),
        broker=broker,
        actor_name=DELIVER_ACTOR,
        queue_name=first,
        priority=DELIVERY_PRIORITY,
        options={
            "retry_when": retry_delivery,
            "throws": (Final,),
            "time_limit": delivery_time_limit_ms,
        },
    )
    for queue in others:
        broker.declare_queue(queue)


async def _bounded(coroutine: Awaitable[None], limit_ms: int | None) -> None:
    # Detached, a request is out of TimeLimit's reach: its deadline bounds it here.
    if not limit_ms:
        await coroutine
        return
    try:
        async with asyncio.timeout(limit_ms / 1000):
            await coroutine
    except TimeoutError:
        log.warning("a request ran past its deadline and was stopped")


def _hold_or_detach(
    host: WorkerHost, loop: asyncio.AbstractEventLoop, coroutine: Awaitable[None]
) -> None:
    """Run a request on the loop; wait for it on this worker thread for at most
    ``REQUEST_HOLD_SECONDS``, then let it finish there alone."""
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)  # type: ignore[arg-type]
    try:
        future.result(timeout=REQUEST_HOLD_SECONDS)
    except concurrent.futures.TimeoutError:
        if future.done():
            future.result(timeout=0)  # its own outcome (a Final, say), for dramatiq
            return
        host.detached.add(future)
        future.add_done_callback(_forget(host))
    except Interrupt:
        # TimeLimit or a shutdown interrupted this thread: stop the request too.
        loop.call_soon_threadsafe(future.cancel)
        raise


def _forget(host: WorkerHost) -> Callable[[concurrent.futures.Future[None]], None]:
    def forget(future: concurrent.futures.Future[None]) -> None:
        host.detached.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("a request failed after it let go of its thread: %s", future.exception())

    return forget

"""The two dramatiq middleware of a worker: hosting the runtime, and telling outcomes.

``Hosting`` starts the process's runtime on the AsyncIO middleware's event loop before the
worker takes any message, and stops it after the last one finished. ``Outcomes`` hooks in
after dramatiq decided a message's fate (Retries scheduled another attempt, or the message
was rejected into the dead-letter queue) and tells the waiting caller, and writes down why a
dead letter died. It also keeps requests out of the dead letters: a request too old to
matter (AgeLimit) is dropped, one interrupted (TimeLimit, shutdown) is answered
``Unavailable``, because nobody could use a replayed request.

Order in the broker's middleware list: ``Outcomes`` before ``Retries`` (dramatiq runs
``after_*`` hooks in reverse order, so it sees what Retries did), ``Hosting`` after
``AsyncIO`` (its loop exists when the worker boots, and still runs when the worker stops).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgspec
from dramatiq import Broker, Middleware
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import MiddlewareError

from adapters.bus.redis.actors import Final, WorkerHost
from adapters.bus.redis.config import DELIVER_ACTOR, REQUEST_ACTOR
from adapters.bus.redis.health import HealthServer
from adapters.bus.redis.reasons import ReasonBook
from adapters.bus.redis.replies import Outcome
from kernel.errors import Unavailable

log = logging.getLogger("cleave.queues.worker")


class BootFailed(MiddlewareError):
    """The runtime did not start: the worker process must not take messages."""


class Hosting(Middleware):
    """Runs the hosted runtime (and the health probes) for as long as the worker runs."""

    def __init__(self, host: WorkerHost, health: HealthServer | None = None) -> None:
        self.host = host
        self.health = health

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        loop = get_event_loop_thread()
        if loop is None:
            raise BootFailed("the AsyncIO middleware must come before Hosting")
        try:
            loop.run_coroutine(self.host.start())
            if self.health is not None:
                loop.run_coroutine(self.health.start())
        except Exception as error:
            log.critical("the worker cannot start: %s", error, exc_info=True)
            try:
                loop.run_coroutine(self.host.stop())
            except Exception:
                log.exception("and could not clean up")
            # The loop thread is not a daemon: left running, it would keep the process alive.
            loop.stop()
            raise BootFailed(f"the worker cannot start: {error}") from error

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # What is still queued stays there for the other workers; in-flight ones finish.
        self.host.stop_taking()
        if self.health is not None:
            self.health.stopping = True

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # The worker threads have finished their messages (or the grace period is over).
        loop = get_event_loop_thread()
        if loop is None:
            return
        if self.health is not None:
            loop.run_coroutine(self.health.stop())
        loop.run_coroutine(self.host.stop())


class Outcomes(Middleware):
    """Reports retries and dead letters to the waiting caller; books dead-letter reasons."""

    def __init__(self, host: WorkerHost, book: ReasonBook) -> None:
        self.host = host
        self.book = book
        #: Why a message failed for good, from its last attempt until it is rejected.
        self._why: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        if message.actor_name == REQUEST_ACTOR and not isinstance(exception, Final):
            self._answer_unavailable(message, exception)
            return
        if not message.failed:
            log.warning(
                "%s %s failed (attempt %d), dramatiq retries it: %s",
                message.actor_name,
                message.message_id,
                int(message.options.get("retries", 1)),
                getattr(exception, "reason", exception),
            )
            return  # after_enqueue told the caller when
        if isinstance(exception, Final):
            # ``throws``: Retries failed it without counting this attempt.
            attempts = int(message.options.get("retries", 0)) + 1
            reason = exception.reason
        else:
            attempts = int(message.options.get("retries", 1))
            detail = (
                getattr(exception, "reason", None) or f"{type(exception).__name__}: {exception}"
            )
            reason = f"gave up after {attempts} attempts: {detail}"
        with self._lock:
            self._why[message.message_id] = (reason, attempts)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        if message.actor_name == REQUEST_ACTOR and message.failed:
            # Older than its caller's deadline (AgeLimit): the caller got Unavailable already.
            message.failed = False
            log.warning("dropped request %s: its caller's deadline had passed", message.message_id)

    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if delay is None or message.actor_name != DELIVER_ACTOR:
            return
        if "retries" not in message.options:
            return
        reply_to = message.options.get("reply_to")
        if reply_to:
            outcome = Outcome(id=message.message_id, kind="retrying", delay=delay / 1000)
            self.host.pusher.push_now(reply_to, outcome)

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            why = self._why.pop(message.message_id, None)
        if why is None:
            why = (self._guess(broker, message), int(message.options.get("retries", 0)) + 1)
        reason, attempts = why
        queue = q_name(message.queue_name)
        dead_id = message.options.get("redis_message_id") or message.message_id
        self.book.record(queue, dead_id, reason, attempts)
        log.error(
            "dead letter %s on %s (%s, %d attempts): %s",
            dead_id,
            queue,
            message.actor_name,
            attempts,
            reason,
        )
        reply_to = message.options.get("reply_to")
        if reply_to and message.actor_name == DELIVER_ACTOR:
            outcome = Outcome(id=message.message_id, kind="dead", reason=reason)
            self.host.pusher.push_now(reply_to, outcome)

    def _answer_unavailable(self, message: MessageProxy, exception: BaseException) -> None:
        # Never dead-letter a request: nobody could use it replayed. Answer, then ack it.
        message.failed = False
        log.warning("request %s failed: %r", message.message_id, exception)
        reply_to = message.options.get("reply_to")
        receiver = self.host.receiver
        if reply_to and receiver is not None:
            error = Unavailable(f"the worker could not finish it: {type(exception).__name__}")
            reply = receiver.codec.encode_error(error)
            self.host.pusher.push_now(reply_to, _reply(message.message_id, reply))

    @staticmethod
    def _guess(broker: Broker, message: MessageProxy) -> str:
        if message.actor_name not in broker.actors:
            return f"no actor {message.actor_name!r} here (expected cleave.request/deliver)"
        return "rejected by the worker"


def _reply(message_id: str, reply: bytes) -> Outcome:
    return Outcome(id=message_id, kind="reply", reply=msgspec.Raw(reply))

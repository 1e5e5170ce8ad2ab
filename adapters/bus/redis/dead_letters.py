"""What the broker dead-lettered, for ``cleave dead-letters``: list, show, replay, purge.

dramatiq rejects a message into its queue's dead-letter queue: on Redis the sorted set
``<namespace>:<queue>.XQ`` (ids by time) and the hash ``<namespace>:<queue>.XQ.msgs``; on
RabbitMQ the queue ``<queue>.XQ``. Each letter is shown like an outbox dead letter (its
envelope's name, the target module, attempts, reason, the envelope and the message), under
a ref ``redis:<module>:<id>`` or ``rabbitmq:<module>:<id>``. Replaying puts the message back
on its module's queue with a fresh attempt count and no caller (nobody waits for it now);
the receiving inbox drops it if it had in fact been handled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.common import xq_name

from adapters.bus.redis.broker import make_broker
from adapters.bus.redis.config import DELIVER_ACTOR, REQUEST_ACTOR, QueueConfig
from adapters.bus.redis.reasons import Reason, ReasonBook

#: Options that belonged to the failed run of a message, not to the message.
_RUN_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta", "reply_to")


@dataclass(frozen=True)
class BrokerDeadLetter:
    """One dead letter of the broker, in the shape of an outbox dead letter."""

    broker: str
    module: str
    id: str
    message_id: str
    name: str
    target: str
    attempts: int
    reason: str
    failed_at: float
    envelope: str
    body: str

    @property
    def ref(self) -> str:
        return f"{self.broker}:{self.module}:{self.id}"


def is_broker_ref(ref: str) -> bool:
    return ref.startswith(("redis:", "rabbitmq:"))


def parse_ref(ref: str) -> tuple[str, str, str]:
    broker, _, rest = ref.partition(":")
    module, _, identifier = rest.partition(":")
    if broker not in ("redis", "rabbitmq") or not module or not identifier:
        raise ValueError(f"a broker dead letter is named redis:<module>:<id>, not {ref!r}")
    return broker, module, identifier


def describe(
    broker: str,
    module: str,
    identifier: str,
    data: bytes,
    reason: Reason | None,
    failed_at: float,
) -> BrokerDeadLetter:
    """A dead letter from the bytes the broker kept."""
    try:
        message = dramatiq.Message.decode(data)
    except Exception:
        text = data.decode("utf-8", errors="replace")
        return BrokerDeadLetter(
            broker, module, identifier, "", "?", module, reason.attempts if reason else 1,
            reason.reason if reason else "not a dramatiq message",
            reason.failed_at if reason else failed_at, "{}", json.dumps(text),
        )  # fmt: skip
    frame = _frame_of(message)
    found = frame.get("envelope")
    envelope: dict[str, Any] = found if isinstance(found, dict) else {}
    name = str(envelope.get("name") or message.actor_name)
    attempts = reason.attempts if reason else int(message.options.get("retries", 0)) + 1
    return BrokerDeadLetter(
        broker=broker,
        module=module,
        id=identifier,
        message_id=str(envelope.get("message_id") or message.message_id),
        name=name,
        target=module,
        attempts=attempts,
        reason=reason.reason if reason else "rejected by a worker (reason not recorded)",
        failed_at=reason.failed_at if reason else failed_at,
        envelope=json.dumps(envelope),
        body=json.dumps(frame.get("message", frame.get("raw"))),
    )


def _frame_of(message: dramatiq.Message[Any]) -> dict[str, Any]:
    frames = [arg for arg in message.args if isinstance(arg, str)]
    if message.actor_name == DELIVER_ACTOR and len(frames) == 2:
        text = frames[1]
    elif message.actor_name == REQUEST_ACTOR and len(frames) == 1:
        text = frames[0]
    else:
        return {"raw": repr(message.args)}
    try:
        frame = json.loads(text)
    except ValueError:
        return {"raw": text}
    return frame if isinstance(frame, dict) else {"raw": text}


def replayable(data: bytes, queue: str) -> dramatiq.Message[Any]:
    """The message to put back on ``queue``: same id and arguments, a fresh run."""
    message = dramatiq.Message.decode(data)
    options = {k: v for k, v in message.options.items() if k not in _RUN_OPTIONS}
    return dramatiq.Message(
        queue_name=queue,
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=message.message_id,
    )


class RedisDeadLetters:
    """The dead letters of the queues of ``modules`` on the Redis broker."""

    def __init__(self, config: QueueConfig, modules: Sequence[str]) -> None:
        self.config = config
        self.modules = list(modules)
        self._client = redis.Redis.from_url(config.redis_url, socket_timeout=10)
        self._book = ReasonBook(config, self._client)

    def close(self) -> None:
        self._client.close()

    def _keys(self, module: str) -> tuple[str, str]:
        queue = self.config.queue(module)
        base = f"{self.config.namespace}:{xq_name(queue)}"
        return base, f"{base}.msgs"

    def _module(self, module: str) -> str:
        if module not in self.modules:
            raise ValueError(
                f"no module {module!r} on the broker (known: {', '.join(self.modules)})"
            )
        return module

    def list(self, module: str | None = None) -> list[BrokerDeadLetter]:
        found: list[BrokerDeadLetter] = []
        for name in [self._module(module)] if module else self.modules:
            ids, messages = self._keys(name)
            entries: list[tuple[bytes, float]] = self._client.zrange(ids, 0, -1, withscores=True)  # type: ignore[assignment]
            if not entries:
                continue
            reasons = self._book.all(self.config.queue(name))
            datas: list[bytes | None] = self._client.hmget(messages, [e for e, _ in entries])  # type: ignore[assignment]
            for (raw_id, score), data in zip(entries, datas, strict=True):
                if data is None:
                    continue
                identifier = raw_id.decode()
                found.append(
                    describe("redis", name, identifier, data, reasons.get(identifier), score / 1000)
                )
        return sorted(found, key=lambda letter: letter.failed_at)

    def get(self, ref: str) -> BrokerDeadLetter | None:
        _, module, identifier = parse_ref(ref)
        ids, messages = self._keys(self._module(module))
        score: float | None = self._client.zscore(ids, identifier)
        data: bytes | None = self._client.hget(messages, identifier)  # type: ignore[assignment]
        if score is None or data is None:
            return None
        reason = self._book.get(self.config.queue(module), identifier)
        return describe("redis", module, identifier, data, reason, score / 1000)

    def retry(self, ref: str) -> bool:
        """Back on its module's queue; False if there is no such dead letter."""
        _, module, identifier = parse_ref(ref)
        ids, messages = self._keys(self._module(module))
        data: bytes | None = self._client.hget(messages, identifier)  # type: ignore[assignment]
        if data is None:
            return False
        queue = self.config.queue(module)
        try:
            message = replayable(data, queue)
        except Exception:
            raise ValueError(f"{ref} is not a dramatiq message: it cannot be replayed") from None
        # On the queue first, out of the dead letters after: a failure in between replays
        # it twice at worst, which the receiving inbox absorbs; the other order could lose it.
        broker = make_broker(self.config)
        try:
            broker.enqueue(message)
        finally:
            broker.close()
        self._client.zrem(ids, identifier)
        self._client.hdel(messages, identifier)
        self._book.forget(queue, identifier)
        return True

    def purge(self, ref: str | None = None) -> int:
        targets = [parse_ref(ref)[1:]] if ref else list(self._all_ids())
        removed = 0
        for module, identifier in targets:
            ids, messages = self._keys(self._module(module))
            if self._client.zrem(ids, identifier):
                removed += 1
            self._client.hdel(messages, identifier)
            self._book.forget(self.config.queue(module), identifier)
        return removed

    def _all_ids(self) -> Iterator[tuple[str, str]]:
        for module in self.modules:
            ids: list[bytes] = self._client.zrange(self._keys(module)[0], 0, -1)  # type: ignore[assignment]
            for raw_id in ids:
                yield module, raw_id.decode()


class RabbitmqDeadLetters:
    """The dead letters of the queues of ``modules`` on RabbitMQ (``<queue>.XQ`` queues).

    RabbitMQ has no way to read a queue without taking its messages: reading takes them
    unacknowledged and closing the channel gives back those not acked.
    """

    def __init__(self, config: QueueConfig, modules: Sequence[str]) -> None:
        self.config = config
        self.modules = list(modules)
        self._book = ReasonBook(config)

    def close(self) -> None:
        self._book.close()

    def _module(self, module: str) -> str:
        if module not in self.modules:
            raise ValueError(
                f"no module {module!r} on the broker (known: {', '.join(self.modules)})"
            )
        return module

    def _browse(self, module: str, settle: Any = None) -> list[BrokerDeadLetter]:
        """Every dead letter of ``module``; ``settle(letter, data)`` may return True to take
        one for good (acked), the rest go back."""
        import pika

        queue = self.config.queue(module)
        connection = pika.BlockingConnection(pika.URLParameters(self.config.rabbitmq_url))
        found: list[BrokerDeadLetter] = []
        try:
            channel = connection.channel()
            channel.queue_declare(queue=xq_name(queue), passive=True)
            while True:
                method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                letter = self._letter(module, queue, properties, body)
                found.append(letter)
                if settle is not None and settle(letter, body):
                    channel.basic_ack(method.delivery_tag)
            channel.close()
        except Exception as error:
            if type(error).__name__ != "ChannelClosedByBroker":  # no such queue yet
                raise
        finally:
            connection.close()
        return found

    def _letter(self, module: str, queue: str, properties: Any, body: bytes) -> BrokerDeadLetter:
        try:
            identifier = dramatiq.Message.decode(body).message_id
        except Exception:
            identifier = f"undecodable-{abs(hash(body))}"
        reason = self._book.get(queue, identifier)
        deaths = (properties.headers or {}).get("x-death") or [{}]
        died = deaths[0].get("time")
        failed_at = died.timestamp() if hasattr(died, "timestamp") else time.time()
        return describe("rabbitmq", module, identifier, body, reason, failed_at)

    def list(self, module: str | None = None) -> list[BrokerDeadLetter]:
        found: list[BrokerDeadLetter] = []
        for name in [self._module(module)] if module else self.modules:
            found.extend(self._browse(name))
        return sorted(found, key=lambda letter: letter.failed_at)

    def get(self, ref: str) -> BrokerDeadLetter | None:
        _, module, identifier = parse_ref(ref)
        return next((x for x in self._browse(self._module(module)) if x.id == identifier), None)

    def retry(self, ref: str) -> bool:
        _, module, identifier = parse_ref(ref)
        queue = self.config.queue(self._module(module))
        broker = make_broker(self.config)
        replayed: list[str] = []

        def put_back(letter: BrokerDeadLetter, body: bytes) -> bool:
            if letter.id != identifier or replayed:
                return False
            broker.enqueue(replayable(body, queue))
            replayed.append(letter.id)
            return True

        try:
            self._browse(module, put_back)
        finally:
            broker.close()
        if replayed:
            self._book.forget(queue, identifier)
        return bool(replayed)

    def purge(self, ref: str | None = None) -> int:
        modules = [parse_ref(ref)[1]] if ref else self.modules
        wanted = parse_ref(ref)[2] if ref else None
        removed = 0
        for module in modules:
            taken = [
                letter
                for letter in self._browse(
                    self._module(module), lambda x, _: wanted is None or x.id == wanted
                )
                if wanted is None or letter.id == wanted
            ]
            removed += len(taken)
            for letter in taken:
                self._book.forget(self.config.queue(module), letter.id)
        return removed


def broker_dead_letters(
    config: QueueConfig, modules: Sequence[str]
) -> RedisDeadLetters | RabbitmqDeadLetters:
    if config.broker == "rabbitmq":
        return RabbitmqDeadLetters(config, modules)
    return RedisDeadLetters(config, modules)

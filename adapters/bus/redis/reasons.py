"""Why each broker dead letter died.

dramatiq's dead-letter queues keep the message as it was enqueued, not why it failed; the
worker writes the reason here when it rejects a message, keyed by the dead letter's id, and
``cleave dead-letters`` reads it back. It lives in Redis with either broker (a RabbitMQ
deployment has Redis for its replies) and expires with dramatiq's dead letters (7 days).
"""

from __future__ import annotations

import logging
import time

import msgspec
import redis

from adapters.bus.redis.config import QueueConfig

log = logging.getLogger("cleave.queues")

#: dramatiq keeps dead letters for 7 days (Redis and RabbitMQ brokers alike).
DEAD_LETTER_TTL_SECONDS = 7 * 86400


class Reason(msgspec.Struct, kw_only=True):
    reason: str
    attempts: int
    failed_at: float


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Reason).decode


class ReasonBook:
    """The reasons of the dead letters of every queue of one namespace."""

    def __init__(self, config: QueueConfig, client: redis.Redis | None = None) -> None:
        self._config = config
        self._client = client or redis.Redis.from_url(config.redis_url, socket_timeout=5)

    def record(self, queue: str, dead_id: str, reason: str, attempts: int) -> None:
        key = self._config.reasons_key(queue)
        entry = Reason(reason=reason, attempts=attempts, failed_at=time.time())
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, dead_id, _encode(entry))
                pipe.expire(key, DEAD_LETTER_TTL_SECONDS)
                pipe.execute()
        except redis.RedisError as error:
            # The dead letter itself is safe in the broker; only its reason is lost.
            log.warning("could not record why %s died (%s): %s", dead_id, reason, error)

    def get(self, queue: str, dead_id: str) -> Reason | None:
        raw = self._client.hget(self._config.reasons_key(queue), dead_id)
        if raw is None:
            return None
        try:
            return _decode(raw)
        except msgspec.DecodeError:
            return None

    def all(self, queue: str) -> dict[str, Reason]:
        found: dict[str, Reason] = {}
        for dead_id, raw in self._client.hgetall(self._config.reasons_key(queue)).items():
            try:
                found[dead_id.decode()] = _decode(raw)
            except msgspec.DecodeError:
                continue
        return found

    def forget(self, queue: str, dead_id: str) -> None:
        self._client.hdel(self._config.reasons_key(queue), dead_id)

    def close(self) -> None:
        self._client.close()

"""A stopping worker's consumer gives back what it fetched and did not hand out.

dramatiq's Redis consumer fetches up to its prefetch into memory; what is still there when
the worker stops stays in the worker's ack set, and only dramatiq's maintenance, once the
worker's heartbeat is older than the heartbeat timeout (30 s here), puts it back on the
queue. A stopped worker must leave the rest on the queue at once.
"""

from __future__ import annotations

import dramatiq
import redis

from adapters.bus.redis.broker import WakingRedisBroker, make_broker
from tests.integration.test_redis_transport import config, namespace
from tests.support.services import REDIS_URL

__all__ = ["namespace"]  # the fixture, used by name


def test_a_closed_consumer_puts_what_it_fetched_and_did_not_hand_out_back_on_the_queue(
    namespace: str,
) -> None:
    broker = make_broker(config(namespace))
    assert isinstance(broker, WakingRedisBroker)
    broker.declare_queue("inventory")
    for number in range(5):
        broker.enqueue(dramatiq.Message("inventory", "cleave.deliver", (str(number),), {}, {}))
    consumer = broker.consume("inventory", prefetch=4, timeout=100)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        taken = next(consumer)  # one handed out, three more fetched with it
        assert taken is not None
        assert client.llen(f"{namespace}:inventory") == 1
        consumer.close()
        # The one handed out is the worker's until it acks it; the three come back.
        assert client.llen(f"{namespace}:inventory") == 4
        (held,) = list(client.scan_iter(f"{namespace}:__acks__.*.inventory"))
        assert client.smembers(held) == {taken.options["redis_message_id"].encode()}
    finally:
        client.close()
        broker.close()

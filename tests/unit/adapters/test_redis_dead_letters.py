"""How a broker dead letter reads to an operator, and what replaying it sends."""

from __future__ import annotations

import json

import dramatiq
import pytest

from adapters.bus.redis.dead_letters import describe, is_broker_ref, parse_ref, replayable
from adapters.bus.redis.reasons import Reason

FRAME = json.dumps(
    {
        "envelope": {"message_id": "e1", "name": "inventory.SellStock", "causation_id": "c1"},
        "message": {"type": "inventory.SellStock", "order_id": "order-7"},
    }
)


def dead(options: dict[str, object]) -> bytes:
    message = dramatiq.Message("inventory", "cleave.deliver", ("inventory", FRAME), {}, options)
    return message.encode()


def test_a_dead_delivery_reads_like_an_outbox_dead_letter() -> None:
    reason = Reason(reason="NotFound: no reservation (final)", attempts=1, failed_at=100.0)
    letter = describe("redis", "inventory", "r-1", dead({"retries": 0}), reason, 50.0)
    assert letter.ref == "redis:inventory:r-1"
    assert (letter.name, letter.target, letter.message_id) == (
        "inventory.SellStock",
        "inventory",
        "e1",
    )
    assert (letter.attempts, letter.reason, letter.failed_at) == (1, reason.reason, 100.0)
    assert json.loads(letter.envelope)["causation_id"] == "c1"
    assert json.loads(letter.body) == {"type": "inventory.SellStock", "order_id": "order-7"}


def test_without_a_recorded_reason_it_still_reads() -> None:
    letter = describe("rabbitmq", "inventory", "m-1", dead({"retries": 2}), None, 50.0)
    assert letter.attempts == 3 and letter.failed_at == 50.0
    assert "not recorded" in letter.reason


def test_bytes_that_are_no_dramatiq_message_are_shown_as_they_are() -> None:
    letter = describe("redis", "inventory", "junk", b"\x00junk", None, 50.0)
    assert (letter.name, letter.reason) == ("?", "not a dramatiq message")
    assert "junk" in json.loads(letter.body)


def test_a_replay_is_a_fresh_run_that_nobody_waits_for() -> None:
    stale = {"retries": 7, "traceback": "...", "redis_message_id": "r-1", "reply_to": "k", "eta": 1}
    data = dead(stale)
    original = dramatiq.Message.decode(data)
    again = replayable(data, "inventory")
    assert again.options == {}
    assert (again.message_id, again.args) == (original.message_id, original.args)


def test_refs_say_where_a_dead_letter_lives() -> None:
    assert is_broker_ref("redis:inventory:abc") and not is_broker_ref("inventory:3")
    assert parse_ref("rabbitmq:payments:m-1") == ("rabbitmq", "payments", "m-1")
    with pytest.raises(ValueError, match="redis:<module>:<id>"):
        parse_ref("redis:inventory")

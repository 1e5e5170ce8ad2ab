"""The wire codec carries messages, results and typed errors, and refuses poison."""

from __future__ import annotations

import msgspec
import pytest

from kernel.codec import Codec
from kernel.errors import (
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    PoisonMessage,
    Rejected,
    Unauthenticated,
    Unavailable,
)
from kernel.messages import Envelope, Principal
from modules.inventory.contracts import ReserveStock, Restock, StockLevel, StockLine

FORMATS = ["json", "msgpack"]


@pytest.fixture(params=FORMATS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return Codec([Restock, ReserveStock], request.param)


def envelope_for(name: str, version: int = 1) -> Envelope:
    return Envelope(
        message_id="m1",
        name=name,
        version=version,
        correlation_id="c1",
        principal=Principal(subject="u1", roles=("admin",)),
        deadline=123.5,
    )


def test_a_message_and_its_envelope_cross_unchanged(codec: Codec) -> None:
    message = ReserveStock(order_id="o1", lines=[StockLine(sku="TEA-1", quantity=2)])
    envelope = envelope_for("inventory.ReserveStock")
    assert codec.decode(codec.encode(envelope, message)) == (envelope, message)


def test_results_are_decoded_to_their_declared_type(codec: Codec) -> None:
    level = StockLevel(sku="TEA-1", on_hand=3, reserved=1, available=2)
    assert codec.decode_reply(codec.encode_result(level), Restock) == level
    assert codec.decode_reply(codec.encode_result(None), ReserveStock) is None


@pytest.mark.parametrize(
    "error",
    [
        NotFound("no product X", code="catalog.product_not_found", field="sku"),
        Conflict("exists", code="catalog.duplicate_sku"),
        Rejected("too few", field="lines[0].quantity"),
        Forbidden("admins only"),
        Unauthenticated("who are you"),
        Unavailable("try later"),
    ],
)
def test_typed_errors_keep_their_type(codec: Codec, error: Exception) -> None:
    with pytest.raises(type(error)) as raised:
        codec.decode_reply(codec.encode_error(error), Restock)
    assert raised.value == error


def test_an_unexpected_error_arrives_as_internal(codec: Codec) -> None:
    with pytest.raises(InternalError, match="ZeroDivisionError"):
        codec.decode_reply(codec.encode_error(ZeroDivisionError("boom")), Restock)


def test_garbage_is_poison(codec: Codec) -> None:
    with pytest.raises(PoisonMessage, match="undecodable"):
        codec.decode(b"\x00 not a frame")


def test_an_unknown_message_name_is_poison(codec: Codec) -> None:
    frame = codec.encode(envelope_for("inventory.Restock"), Restock(sku="A", quantity=1))
    other = Codec([ReserveStock], codec.format)
    with pytest.raises(PoisonMessage, match=r"unknown message name 'inventory\.Restock'"):
        other.decode(frame)


def test_another_schema_version_is_poison(codec: Codec) -> None:
    frame = codec.encode(envelope_for("inventory.Restock", 2), Restock(sku="A", quantity=1))
    with pytest.raises(PoisonMessage, match="schema version 2"):
        codec.decode(frame)


def test_a_body_that_breaks_its_contract_is_poison(codec: Codec) -> None:
    encoder = msgspec.json if codec.format == "json" else msgspec.msgpack
    body = encoder.encode({"type": "inventory.Restock", "sku": "A", "quantity": -5})
    envelope = envelope_for("inventory.Restock")
    with pytest.raises(PoisonMessage, match="does not match its contract"):
        codec.decode_body(envelope, body)

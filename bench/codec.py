"""Item 2: the wire codec, encode + decode of an envelope with an order, against pydantic v2
and the standard ``json`` module on the same data.

- msgspec (the real ``kernel.codec.Codec``, JSON and MessagePack): a frame of envelope and
  message out, then back into typed, validated structs, looked up by the envelope's name and
  checked against the receiver's schema version, exactly as a transport does.
- pydantic v2: equivalent models with the same constraints (lengths, ranges, the SKU
  pattern), ``model_dump_json`` then ``model_validate_json``. It is handed the message type
  directly, a shortcut the real codec does not take.
- json: ``json.dumps`` of the same data as dicts, then ``json.loads`` back to dicts. No
  types, no validation: the floor of what plain JSON costs, not a usable codec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from bench.report import Section, fmt
from bench.timing import Stamp, SyncLoop, busy_note, compare_sync, since, stamp
from kernel.codec import Codec
from kernel.messages import Envelope, Principal
from modules.ordering.contracts import OrderLineRequest, PlaceOrder


def order_envelope() -> tuple[Envelope, PlaceOrder]:
    """A realistic envelope and order: a user's order of three lines, mid-trace."""
    order = PlaceOrder(
        lines=[
            OrderLineRequest(sku="TEA-001", quantity=2),
            OrderLineRequest(sku="MUG-042", quantity=1),
            OrderLineRequest(sku="KETTLE-7", quantity=1),
        ],
        payment_token="tok_ok",
    )
    envelope = Envelope(
        message_id="3f2a9c1e5b7d4a60000004d2",
        name="ordering.PlaceOrder",
        version=1,
        correlation_id="3f2a9c1e5b7d4a60000004d1",
        causation_id="3f2a9c1e5b7d4a60000004d1",
        principal=Principal(subject="0c6a2f0e9d8b4c1aa1b2c3d4e5f60718", roles=("customer",)),
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        deadline=1_767_225_600.25,
    )
    return envelope, order


# -- the pydantic equivalent ----------------------------------------------------------------

_STRICT = ConfigDict(frozen=True, extra="forbid")
_Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class PydanticPrincipal(BaseModel):
    model_config = _STRICT
    subject: str
    roles: tuple[str, ...] = ()
    kind: Literal["user", "service", "system"] = "user"


class PydanticEnvelope(BaseModel):
    model_config = _STRICT
    message_id: str
    name: str
    version: int = 1
    correlation_id: str | None = None
    causation_id: str | None = None
    principal: PydanticPrincipal | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    deadline: float | None = None
    attempt: int = 1


class PydanticOrderLine(BaseModel):
    model_config = _STRICT
    sku: _Sku
    quantity: Annotated[int, Field(ge=1, le=1_000)]


class PydanticPlaceOrder(BaseModel):
    model_config = _STRICT
    type: Literal["ordering.PlaceOrder"] = "ordering.PlaceOrder"
    lines: Annotated[list[PydanticOrderLine], Field(min_length=1, max_length=50)]
    payment_token: Annotated[str, Field(min_length=1, max_length=200)]
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255)] | None = None


class PydanticFrame(BaseModel):
    model_config = _STRICT
    envelope: PydanticEnvelope
    message: PydanticPlaceOrder


# -- the contenders ------------------------------------------------------------------------


def _repeat(roundtrip: Callable[[], Any]) -> SyncLoop:
    def run(n: int) -> Stamp:
        start = stamp()
        for _ in range(n):
            roundtrip()
        return since(start)

    return run


def contenders() -> tuple[dict[str, SyncLoop], dict[str, int]]:
    """Each contender's encode+decode round trip, and the size of what it puts on the wire."""
    envelope, order = order_envelope()

    json_codec = Codec([PlaceOrder], "json")
    msgpack_codec = Codec([PlaceOrder], "msgpack")

    def msgspec_json() -> Any:
        return json_codec.decode(json_codec.encode(envelope, order))

    def msgspec_msgpack() -> Any:
        return msgpack_codec.decode(msgpack_codec.encode(envelope, order))

    frame = PydanticFrame.model_validate(
        {"envelope": msgspec.to_builtins(envelope), "message": msgspec.to_builtins(order)}
    )

    def pydantic_json() -> Any:
        return PydanticFrame.model_validate_json(frame.model_dump_json(exclude_defaults=True))

    plain = json.loads(msgspec.json.encode({"envelope": envelope, "message": order}))

    def stdlib_json() -> Any:
        return json.loads(json.dumps(plain, separators=(",", ":")).encode())

    # Every contender must get the same data back (checked once, before timing).
    decoded_envelope, decoded_order = msgspec_json()
    assert decoded_envelope == envelope and decoded_order == order
    assert msgspec_msgpack() == (envelope, order)
    assert pydantic_json() == frame
    assert stdlib_json() == plain

    sizes = {
        "msgspec json (kernel Codec)": len(json_codec.encode(envelope, order)),
        "msgspec msgpack (kernel Codec)": len(msgpack_codec.encode(envelope, order)),
        "pydantic v2 json": len(frame.model_dump_json(exclude_defaults=True)),
        "stdlib json (dicts, no validation)": len(json.dumps(plain, separators=(",", ":"))),
    }
    loops = {
        "msgspec json (kernel Codec)": _repeat(msgspec_json),
        "msgspec msgpack (kernel Codec)": _repeat(msgspec_msgpack),
        "pydantic v2 json": _repeat(pydantic_json),
        "stdlib json (dicts, no validation)": _repeat(stdlib_json),
    }
    return loops, sizes


def measure(*, quick: bool) -> Section:
    """Round trips per second of each contender, and the ratios to msgspec."""
    loops, sizes = contenders()
    timings = compare_sync(loops, budget=0.05 if quick else 0.25, repetitions=5 if quick else 11)
    base = timings["msgspec json (kernel Codec)"]
    section = Section(
        title="2. Codec: encode + decode of an envelope with a 3-line PlaceOrder",
        headers=[
            "codec",
            "µs / round trip",
            "round trips / s",
            "bytes",
            "vs msgspec json",
            "CPU µs",
        ],
    )
    for name, timing in timings.items():
        section.rows.append(
            [
                name,
                f"{timing.us:.2f}",
                fmt(timing.per_second),
                str(sizes[name]),
                f"{timing.median_s / base.median_s:.2f}x",
                f"{timing.cpu_s * 1e6:.2f}",
            ]
        )
    pydantic = timings["pydantic v2 json"]
    stdlib = timings["stdlib json (dicts, no validation)"]
    section.notes += [
        f"msgspec (typed, validated) is {pydantic.median_s / base.median_s:.1f}x faster than "
        f"pydantic v2 and {stdlib.median_s / base.median_s:.1f}x faster than the standard json "
        "module, which neither types nor validates.",
        "The envelope carries ids, a principal with a role, a traceparent and a deadline.",
        busy_note(timings),
    ]
    section.metrics = {
        "codec_msgspec_us": round(base.us, 3),
        "codec_msgpack_us": round(timings["msgspec msgpack (kernel Codec)"].us, 3),
        "codec_pydantic_us": round(pydantic.us, 3),
        "codec_json_us": round(stdlib.us, 3),
        "codec_vs_pydantic": round(pydantic.median_s / base.median_s, 2),
        "codec_vs_json": round(stdlib.median_s / base.median_s, 2),
    }
    return section

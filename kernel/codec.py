"""The wire codec: how envelopes, messages, results and typed errors become bytes and back.

Every transport that leaves the process uses it, and loopback inside it. Decoding refuses, as
a ``PoisonMessage``, anything undecodable, an unknown name and another schema version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from kernel.errors import (
    InternalError,
    PoisonMessage,
    WireError,
    error_from_wire,
    error_to_wire,
)
from kernel.messages import Envelope, Message, message_name, result_type

Format = Literal["json", "msgpack"]


class _Frame(msgspec.Struct, kw_only=True):
    envelope: Envelope
    message: msgspec.Raw


class _Reply(msgspec.Struct, kw_only=True):
    result: msgspec.Raw
    error: WireError | None = None


class Codec:
    """Encodes and decodes the messages of a known set of contracts."""

    def __init__(self, messages: Iterable[type[Message]], format: Format = "json") -> None:
        self.format = format
        self._types = {message_name(cls): cls for cls in messages}
        encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
        if format == "json":
            encoder = msgspec.json.Encoder()
            self._decoder_for: Callable[[Any], Any] = msgspec.json.Decoder
        else:
            encoder = msgspec.msgpack.Encoder()
            self._decoder_for = msgspec.msgpack.Decoder
        self._encode = encoder.encode
        self._null = msgspec.Raw(encoder.encode(None))
        self._frame = self._decoder_for(_Frame)
        self._reply = self._decoder_for(_Reply)
        self._envelope = self._decoder_for(Envelope)
        self._message_decoders: dict[type[Message], Any] = {}
        self._result_decoders: dict[type[Message], Any] = {}

    def message_type(self, name: str) -> type[Message] | None:
        """The message class of a wire name, if this codec knows it."""
        return self._types.get(name)

    def with_format(self, format: Format) -> Codec:
        """A codec of the same messages in another wire format."""
        return Codec(self._types.values(), format)

    # -- messages ---------------------------------------------------------------------------

    def encode(self, envelope: Envelope, message: Message) -> bytes:
        """Envelope and message as one frame."""
        return self._encode(_Frame(envelope=envelope, message=msgspec.Raw(self._encode(message))))

    def decode(self, data: bytes) -> tuple[Envelope, Message]:
        """Envelope and typed message from one frame; ``PoisonMessage`` if impossible."""
        try:
            frame = self._frame.decode(data)
        except msgspec.DecodeError as error:
            raise PoisonMessage(f"undecodable frame: {error}") from error
        return frame.envelope, self.decode_body(frame.envelope, frame.message)

    def encode_envelope(self, envelope: Envelope) -> bytes:
        """The envelope alone (an outbox row keeps it apart from the body)."""
        return self._encode(envelope)

    def encode_body(self, message: Message) -> bytes:
        """The message alone, without its envelope."""
        return self._encode(message)

    def decode_envelope(self, data: bytes) -> Envelope:
        """An envelope from ``encode_envelope``'s bytes; ``PoisonMessage`` if impossible."""
        try:
            envelope: Envelope = self._envelope.decode(data)
            return envelope
        except msgspec.DecodeError as error:
            raise PoisonMessage(f"undecodable envelope: {error}") from error

    def decode_body(self, envelope: Envelope, body: bytes | msgspec.Raw) -> Message:
        """The message named by ``envelope``, decoded strictly against its contract."""
        cls = self._types.get(envelope.name)
        if cls is None:
            raise PoisonMessage(f"unknown message name {envelope.name!r}")
        if envelope.version != cls.version:
            raise PoisonMessage(
                f"{envelope.name} has schema version {envelope.version}; "
                f"this process reads version {cls.version}"
            )
        decoder = self._message_decoders.get(cls)
        if decoder is None:
            decoder = self._message_decoders[cls] = self._decoder_for(cls)
        try:
            return decoder.decode(body)  # type: ignore[no-any-return]
        except msgspec.DecodeError as error:
            raise PoisonMessage(f"{envelope.name} does not match its contract: {error}") from error

    # -- replies ----------------------------------------------------------------------------

    def encode_result(self, value: Any) -> bytes:
        """A handler's result as a reply."""
        return self._encode(_Reply(result=msgspec.Raw(self._encode(value))))

    def encode_error(self, error: BaseException) -> bytes:
        """A handler's failure as a reply; typed errors keep their kind."""
        return self._encode(_Reply(result=self._null, error=error_to_wire(error)))

    def decode_reply(self, data: bytes, message: type[Message]) -> Any:
        """The result of ``message`` from a reply, or raise the typed error it carries (a
        ``PoisonMessage`` when the receiver could not read the frame)."""
        try:
            reply = self._reply.decode(data)
        except msgspec.DecodeError as error:
            raise InternalError(f"unreadable reply to {message_name(message)}: {error}") from error
        if reply.error is not None:
            raise error_from_wire(reply.error)
        decoder = self._result_decoders.get(message)
        if decoder is None:
            kind = result_type(message)
            decoder = self._result_decoders[message] = self._decoder_for(
                Any if kind is None else kind
            )
        return decoder.decode(reply.result)

"""Typed errors that keep their type across every transport.

A handler raises one of the ``DomainError`` subclasses to refuse a message for a reason the
caller can act on. The error is encoded on the wire by its ``kind`` and decoded into the same
class on the caller's side, so ``except NotFound`` works whatever the topology. Such errors are
final: a relay never retries them. ``Unavailable`` is the one retryable kind.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class CleaveError(Exception):
    """Base of every error that may cross a process boundary."""

    kind: ClassVar[str] = "Internal"
    #: Whether a relay should try the delivery again later.
    retryable: ClassVar[bool] = True

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and isinstance(other, CleaveError)
            and (self.detail, self.code, self.field) == (other.detail, other.code, other.field)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.detail, self.code, self.field))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, code={self.code!r}, field={self.field!r})"


class DomainError(CleaveError):
    """A refusal the caller can act on. Final: never retried."""

    retryable: ClassVar[bool] = False


class NotFound(DomainError):
    """The thing asked for does not exist (or the caller may not know it does)."""

    kind = "NotFound"


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate, a stale version)."""

    kind = "Conflict"


class Rejected(DomainError):
    """The request breaks a rule of the domain; ``field`` names the culprit when there is one."""

    kind = "Rejected"


class Forbidden(DomainError):
    """The principal may not do this."""

    kind = "Forbidden"


class Unauthenticated(DomainError):
    """The caller could not prove who they are (bad credentials, no principal)."""

    kind = "Unauthenticated"


class Unavailable(CleaveError):
    """A collaborator could not answer now (timeout, open circuit, lost connection). Retryable."""

    kind = "Unavailable"


class InternalError(CleaveError):
    """An unexpected failure on the far side of a transport (a bug, not a refusal). Retryable."""

    kind = "Internal"


class ConcurrencyConflict(Unavailable):
    """Two units of work changed the same thing at once; the loser is retried from scratch."""

    kind = "Unavailable"


class PoisonMessage(Exception):
    """A message that can never be handled: undecodable, unknown name, or wrong version.

    It goes straight to the dead letters with ``reason``; it never stops a relay or a worker.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuplicateDelivery(Exception):
    """The inbox already holds this message for this handler: the delivery is a no-op."""


class ConfigurationError(Exception):
    """The declared modules cannot run together; raised at start-up with what to fix."""


_TYPED = (NotFound, Conflict, Rejected, Forbidden, Unauthenticated, Unavailable, InternalError)
ERROR_KINDS: dict[str, type[CleaveError]] = {cls.kind: cls for cls in _TYPED}


class WireError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a ``CleaveError`` travels."""

    kind: str
    detail: str
    code: str | None = None
    field: str | None = None


#: The wire kind of a ``PoisonMessage``: the receiver could not read what it was sent.
POISON = "Poison"


def error_to_wire(error: BaseException) -> WireError:
    """Describe ``error`` for the wire; anything untyped becomes ``Internal``."""
    if isinstance(error, CleaveError):
        return WireError(kind=error.kind, detail=error.detail, code=error.code, field=error.field)
    if isinstance(error, PoisonMessage):
        return WireError(kind=POISON, detail=error.reason)
    return WireError(kind="Internal", detail=f"{type(error).__name__}: {error}")


def error_from_wire(wire: WireError) -> CleaveError | PoisonMessage:
    """Rebuild the typed error described by ``wire`` (``InternalError`` for unknown kinds)."""
    if wire.kind == POISON:
        return PoisonMessage(wire.detail)
    cls = ERROR_KINDS.get(wire.kind, InternalError)
    return cls(wire.detail, code=wire.code, field=wire.field)

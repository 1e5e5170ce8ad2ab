"""What identity needs from outside, implemented by adapters and bound by the bootstrap."""

from __future__ import annotations

from typing import Protocol


class PasswordHasher(Protocol):
    """A slow, salted password hash (argon2 in production)."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, hashed: str, password: str) -> bool:
        """True when ``password`` matches ``hashed``; never raises for a mismatch."""
        ...


class TokenIssuer(Protocol):
    """Signs access tokens the edge will accept."""

    def issue(self, subject: str, roles: tuple[str, ...]) -> tuple[str, int]:
        """A token for ``subject`` with ``roles``, and its lifetime in seconds."""
        ...

"""Argon2id password hashing for the identity module's ``PasswordHasher`` port.

Hashing is deliberately slow CPU and memory work (about 0.2 s at the default cost on a
two-core machine), so it runs in a worker thread: argon2-cffi releases the GIL while it
hashes, and the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import argon2
from argon2.exceptions import VerificationError

#: The cost profiles: argon2-cffi's defaults (RFC 9106, low memory) for production, and the
#: cheapest parameters argon2 accepts for tests and demos (never for real passwords).
Cost = Literal["default", "low"]

_PARAMETERS: dict[Cost, argon2.Parameters] = {
    "default": argon2.profiles.get_default_parameters(),
    "low": argon2.profiles.CHEAPEST,
}


class Argon2PasswordHasher:
    """Salted argon2id hashes, computed off the event loop."""

    def __init__(self, cost: Cost = "default") -> None:
        if cost not in _PARAMETERS:
            raise ValueError(f"unknown password hash cost {cost!r}: use 'default' or 'low'")
        self.cost = cost
        self._hasher = argon2.PasswordHasher.from_parameters(_PARAMETERS[cost])

    async def hash(self, password: str) -> str:
        """A new salted hash of ``password`` (two calls give two different hashes)."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; False for a mismatch or a malformed hash."""
        return await asyncio.to_thread(self._verify, hashed, password)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, ValueError):
            # A mismatch is a VerifyMismatchError (a VerificationError), and so is a hash that
            # parses but is corrupt; a hash that does not parse raises InvalidHashError, and
            # one with non-ASCII characters UnicodeEncodeError: both are ValueErrors.
            return False

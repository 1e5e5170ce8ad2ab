"""The hash a login for an unknown email is checked against, so that it costs as much as one
with a wrong password."""

from __future__ import annotations

import secrets

from modules.identity.ports import PasswordHasher


class DummyHash:
    """A hash of a random password, made once by the configured hasher.

    A login for an unknown email verifies against it, so that it costs what a login with a
    wrong password costs: the response time does not tell whether an email is registered.
    """

    def __init__(self, hasher: PasswordHasher) -> None:
        self._hasher = hasher
        self._hash: str | None = None

    async def get(self) -> str:
        if self._hash is None:
            # Two first logins at once may both compute it; either result is as good.
            self._hash = await self._hasher.hash(secrets.token_urlsafe(16))
        return self._hash

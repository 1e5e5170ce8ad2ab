"""Bearer tokens verified once, not on every request that carries them.

A client sends the same token with every request until it expires: an order is placed and
then waited for with one token. Verifying it (base64, the HMAC, JSON, the claims, building
litestar's ``Token``) cost about 7% of the server's CPU per order (issue 12, py-spy at 100
orders/s). A token whose exact text verified before, under the same secret and the same
rules, verifies again: only its expiry can change the answer, so a hit checks ``exp``
against the clock again and nothing else (``nbf``, once passed, stays passed). The key is
the whole token, its signature included: a token changed in any byte is a different key
and is verified in full. A token that fails is never kept.

The roles a token names are still checked against the account on every request
(``adapters.http.auth.principal_resolver``): a cached token does not outlive the account or
the roles behind it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Self

from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import Token

#: Verified tokens kept at most (per process); the oldest is forgotten first.
KEPT = 4096


class VerifiedTokens(Token):
    """litestar's ``Token`` whose ``decode`` remembers tokens it verified.

    The ``Token`` a hit returns is the one built when the token was verified, shared by the
    requests that carry it: read it, do not change it."""

    #: (token, secret, algorithm, rules) -> (the token decoded, its exp in seconds)
    _verified: dict[tuple[Any, ...], tuple[Token, float]] = {}

    @classmethod
    def decode(
        cls,
        encoded_token: str,
        secret: str,
        algorithm: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        require_claims: Sequence[str] | None = None,
        verify_exp: bool = True,
        verify_nbf: bool = True,
        strict_audience: bool = False,
    ) -> Self:
        key = (
            encoded_token,
            secret,
            algorithm,
            _frozen(audience),
            _frozen(issuer),
            _frozen(require_claims),
            verify_exp,
            verify_nbf,
            strict_audience,
        )
        kept = cls._verified.get(key)
        if kept is not None:
            token, expires = kept
            # PyJWT's rule with no leeway: expired once exp <= now.
            if not verify_exp or time.time() < expires:
                return token  # type: ignore[return-value]
            del cls._verified[key]
            raise NotAuthorizedException("Invalid token")
        token = super().decode(
            encoded_token,
            secret,
            algorithm,
            audience,
            issuer,
            require_claims,
            verify_exp,
            verify_nbf,
            strict_audience,
        )
        verified = cls._verified
        if len(verified) >= KEPT:
            del verified[next(iter(verified))]
        verified[key] = (token, token.exp.timestamp())
        return token


def _frozen(value: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    return value if value is None or isinstance(value, str) else tuple(value)

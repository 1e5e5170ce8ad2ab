"""A token verified once is not verified again, but what changes with time still counts:
an expired token is refused even though it verified before, and a changed token is
verified in full."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import jwt
import pytest
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import Token

from adapters.http import verified_tokens
from adapters.http.verified_tokens import VerifiedTokens

SECRET = "unit-test-secret-0123456789abcdef0123"


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    VerifiedTokens._verified.clear()
    yield
    VerifiedTokens._verified.clear()


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature and claims were checked in full."""
    checked: list[str] = []
    real = Token.decode_payload.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Token], encoded_token: str, *args: object, **kwargs: object) -> object:
        checked.append(encoded_token)
        return real(cls, encoded_token, *args, **kwargs)

    monkeypatch.setattr(Token, "decode_payload", classmethod(counted))
    return checked


def signed(secret: str = SECRET, expires_in: float = 600, **claims: object) -> str:
    now = time.time()
    body = {"sub": "ada", "exp": int(now + expires_in), "iat": int(now), **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def decode(token: str, secret: str = SECRET) -> Token:
    return VerifiedTokens.decode(token, secret, "HS256")


def at(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    monkeypatch.setattr(verified_tokens, "time", SimpleNamespace(time=lambda: moment))


def test_a_token_is_verified_once_and_then_recognised(verifications: list[str]) -> None:
    token = signed(extras={"roles": ["customer"]})
    first, second = decode(token), decode(token)
    assert verifications == [token]
    assert first.sub == second.sub == "ada"
    assert second.extras["roles"] == ["customer"]


def test_a_recognised_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = signed(expires_in=60)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    decode(token)
    at(monkeypatch, expires - 0.5)
    assert decode(token).sub == "ada"
    at(monkeypatch, expires)
    with pytest.raises(NotAuthorizedException):
        decode(token)
    monkeypatch.undo()
    assert not VerifiedTokens._verified  # forgotten, not kept refusing from memory


def test_a_token_not_valid_yet_is_refused_until_its_time(
    monkeypatch: pytest.MonkeyPatch, verifications: list[str]
) -> None:
    soon = int(time.time()) + 30
    token = signed(nbf=soon)
    with pytest.raises(NotAuthorizedException):
        decode(token)
    assert not VerifiedTokens._verified  # a refused token is never kept
    # Verified in full once it is valid, then recognised while it stays so...
    at(monkeypatch, soon + 1)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _Frozen(soon + 1))
    assert decode(token).sub == "ada"
    assert decode(token).sub == "ada"
    assert verifications == [token, token]


def test_a_changed_token_is_verified_in_full(verifications: list[str]) -> None:
    token = signed()
    decode(token)
    head, body, signature = token.split(".")
    tampered = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(NotAuthorizedException):
        decode(tampered)
    assert verifications == [token, tampered]


def test_a_token_recognised_under_one_secret_is_refused_under_another() -> None:
    token = signed()
    decode(token)
    with pytest.raises(NotAuthorizedException):
        decode(token, secret="another-secret-0123456789abcdef0123456")


def test_the_tokens_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verified_tokens, "KEPT", 3)
    tokens = [signed(sub=f"user-{n}") for n in range(5)]
    for token in tokens:
        decode(token)
    kept = [key[0] for key in VerifiedTokens._verified]
    assert kept == tokens[2:]  # the oldest forgotten first


class _Frozen:
    """``datetime`` for PyJWT's own clock, fixed at ``moment``."""

    def __init__(self, moment: float) -> None:
        import datetime

        self._now = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC)

    def now(self, tz: object = None) -> object:
        return self._now

"""The secret that signs access tokens: never empty, anywhere; never short or public in
production; announced when short in development."""

from __future__ import annotations

from entrypoints.settings import DEVELOPMENT_JWT_SECRET, Settings


def test_an_empty_secret_is_refused_in_development_too() -> None:
    for env in ("development", "production"):
        (refused,) = Settings(env=env, jwt_secret="").refusals(split=False)
        assert "CLEAVE_JWT_SECRET" in refused and "empty" in refused
        assert "secrets.token_urlsafe" in refused  # it says how to make one


def test_development_warns_about_a_short_secret_and_production_refuses_it() -> None:
    short = Settings(jwt_secret="short-secret")
    assert short.refusals(split=False) == []
    assert any("shorter than 32 bytes" in warning for warning in short.warnings())
    (refused,) = Settings(env="production", jwt_secret="short-secret").refusals(split=False)
    assert "at least 32 bytes" in refused
    # A long enough secret of one's own: nothing to say about it.
    assert not any("JWT" in warning for warning in Settings(jwt_secret="s" * 32).warnings())
    assert Settings(env="production", jwt_secret="s" * 32).refusals(split=False) == []
    assert Settings(env="production").refusals(split=False)  # the development secret
    assert DEVELOPMENT_JWT_SECRET not in Settings(env="production").refusals(split=False)[0]

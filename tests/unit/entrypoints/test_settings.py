"""Production refuses the public development secrets; development only warns about them."""

from __future__ import annotations

from entrypoints.settings import DEVELOPMENT_JWT_SECRET, Settings

STRONG = "s" * 48


def test_development_warns_and_runs() -> None:
    settings = Settings()
    assert settings.refusals(split=True) == []
    warnings = " ".join(settings.warnings())
    assert "CLEAVE_JWT_SECRET is not set" in warnings and "CLEAVE_SERVICE_KEY" in warnings


def test_production_refuses_development_empty_and_short_secrets() -> None:
    for secret in (DEVELOPMENT_JWT_SECRET, "", "short-secret"):
        refused = Settings(env="production", jwt_secret=secret, service_key=STRONG).refusals(
            split=True
        )
        assert len(refused) == 1 and "CLEAVE_JWT_SECRET" in refused[0], secret
        assert "secrets.token_urlsafe" in refused[0]  # it says how to make one


def test_a_split_deployment_needs_its_own_service_key() -> None:
    settings = Settings(env="production", jwt_secret=STRONG)
    assert settings.refusals(split=False) == []
    (refused,) = settings.refusals(split=True)
    assert "CLEAVE_SERVICE_KEY" in refused
    assert (
        Settings(env="production", jwt_secret=STRONG, service_key=STRONG).refusals(split=True) == []
    )


def test_cleave_serve_is_strict_even_in_development() -> None:
    assert len(Settings().refusals(split=True, strict=True)) == 2

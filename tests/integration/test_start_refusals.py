"""A shop that would sign tokens anyone can forge, or none at all, does not start.

``cleave run`` in production with the public development secret (or a short one), and
``cleave run`` anywhere with an empty one, stop at once with a message that says how to make
a secret, instead of serving (the first) or answering every login with a 500 (the second).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.settings import Settings
from entrypoints.up import free_port
from kernel.errors import ConfigurationError
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio


def cleave_run(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    # Only this test's CLEAVE_* variables: none leaks in from the environment running it.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLEAVE_")}
    environment.update(
        CLEAVE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        CLEAVE_PAYMENT_PROVIDER_URL="http://127.0.0.1:9",
        CLEAVE_PAYMENT_PROVIDER_KEY="unused",
        CLEAVE_PORT=str(free_port()),
        **variables,
    )
    # A process that does start serves until the timeout, which fails the test.
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "run"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "variables",
    [
        {"CLEAVE_ENV": "production"},  # the public development secret
        {"CLEAVE_ENV": "production", "CLEAVE_JWT_SECRET": "short-secret"},
        {"CLEAVE_ENV": "production", "CLEAVE_JWT_SECRET": ""},
        {"CLEAVE_JWT_SECRET": ""},  # development
    ],
    ids=["production-development-secret", "production-short", "production-empty", "empty"],
)
def test_cleave_run_refuses_a_secret_anyone_could_sign_with(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    ran = cleave_run(tmp_path, **variables)
    assert ran.returncode == 1, ran.stderr
    assert "cleave run refuses to start" in ran.stderr
    assert "CLEAVE_JWT_SECRET" in ran.stderr
    assert "secrets.token_urlsafe" in ran.stderr  # how to make one
    assert "Traceback" not in ran.stderr


async def test_the_app_refuses_an_empty_secret_before_any_login(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        jwt_secret="",
        password_hash_cost="low",
        payment_provider_url="http://127.0.0.1:9",
    )
    refusal = pytest.RaisesExc(ConfigurationError, match="CLEAVE_JWT_SECRET is set but empty")
    # The lifespan's task group wraps the refusal.
    with pytest.RaisesGroup(refusal, flatten_subgroups=True):
        async with AsyncTestClient(app=create_app(settings)):
            pass

"""The `cleave` command a user or operator types: create an admin, inspect the dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import bootstrap
from entrypoints.settings import DEVELOPMENT_JWT_SECRET
from modules.identity.contracts import LogIn
from tests.support.harness import TEST_SETTINGS
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio


def cleave(url: str, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *arguments],
        cwd=ROOT,
        env={
            **os.environ,
            "CLEAVE_DATABASE_URL": url,
            "CLEAVE_LOG_LEVEL": "ERROR",
            "CLEAVE_PASSWORD_HASH_COST": "low",
        },
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def create_admin(url: str, email: str, password: str) -> subprocess.CompletedProcess[str]:
    return cleave(
        url, "users", "create-admin", "--email", email, "--password-stdin", stdin=password
    )


async def test_create_admin_makes_an_account_that_can_log_in_as_admin(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    created = create_admin(url, "Boss@Example.com", "long enough pw")
    assert created.returncode == 0, created.stderr
    assert "admin boss@example.com" in created.stdout
    again = create_admin(url, "boss@example.com", "long enough pw")
    assert again.returncode == 0, again.stderr  # idempotent

    weak = create_admin(url, "x@example.com", "short")
    assert weak.returncode == 1
    assert "password" in weak.stderr and "Traceback" not in weak.stderr

    database = Database(url)
    try:
        runtime = bootstrap(database=database, settings=TEST_SETTINGS, hosted=["identity"])
        token = await runtime.bus.send(LogIn(email="boss@example.com", password="long enough pw"))
    finally:
        await database.dispose()
    claims = jwt.decode(token.access_token, DEVELOPMENT_JWT_SECRET, algorithms=["HS256"])
    assert "admin" in claims["extras"]["roles"]


def test_an_unknown_command_or_bad_setting_is_explained(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli"], cwd=ROOT, capture_output=True, text=True
    )
    assert help_text.returncode == 2 and "run" in help_text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "dead-letters", "list"],
        cwd=ROOT,
        env={**os.environ, "CLEAVE_PORT": "not-a-number"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "CLEAVE_PORT" in bad.stderr and "Traceback" not in bad.stderr

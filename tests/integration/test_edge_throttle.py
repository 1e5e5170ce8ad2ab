"""The throttles of log in and register (issue 11, item 2): whose address counts, which
budgets are separate, and how failed logins are counted per account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.settings import Settings
from tests.support.processes import Process, start_app

pytestmark = pytest.mark.anyio

LOGIN, REGISTER = "/api/v1/identity/login", "/api/v1/identity/register"
ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root horse battery staple"
BUDGET = 5


def app_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        "CLEAVE_PASSWORD_HASH_COST": "low",
        "CLEAVE_PAYMENT_PROVIDER_URL": "http://127.0.0.1:9",
        "CLEAVE_LOG_LEVEL": "WARNING",
        "CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE": str(BUDGET),
        "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
        "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **extra,
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """Starts ``cleave run`` with the given extra settings; stops it after the test."""
    started: list[Process] = []

    def serve(**extra: str) -> str:
        process, url = start_app(tmp_path, app_environment(tmp_path, **extra))
        started.append(process)
        return url

    yield serve
    for process in started:
        process.close()


def log_in(url: str, email: str, forwarded_for: str, password: str = "wrong password") -> Any:
    return httpx.post(
        url + LOGIN,
        json={"email": email, "password": password},
        headers={"x-forwarded-for": forwarded_for},
        timeout=30,
    )


def test_a_forged_forwarded_address_does_not_buy_a_new_budget(served: Any) -> None:
    url = served()  # no trusted proxy: the peer's own address is the client's
    statuses = [
        log_in(url, f"user{n}@example.com", f"198.51.100.{n}").status_code for n in range(30)
    ]
    assert statuses[:BUDGET] == [401] * BUDGET
    assert set(statuses[BUDGET:]) == {429}
    refused = log_in(url, "someone@example.com", "192.0.2.1")
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(served: Any) -> None:
    url = served(CLEAVE_TRUSTED_PROXIES="127.0.0.1")
    # Thirty clients behind the proxy, one attempt each: nobody is over a budget.
    statuses = {
        log_in(url, f"user{n}@example.com", f"198.51.100.{n}").status_code for n in range(30)
    }
    assert statuses == {401}
    # One client floods; it alone is throttled, and the admin still logs in.
    flood = [log_in(url, "nobody@example.com", "203.0.113.9").status_code for _ in range(30)]
    assert 429 in flood
    admin = log_in(url, ADMIN_EMAIL, "192.0.2.7", password=ADMIN_PASSWORD)
    assert admin.status_code == 200, admin.text
    # The proxy sees the client's address last: what the client itself put before it is
    # not believed (a fresh client address behind the same forged prefix is throttled
    # as the flooder was).
    assert log_in(url, "nobody@example.com", "10.9.9.9, 203.0.113.9").status_code == 429


@asynccontextmanager
async def open_app(tmp_path: Path, **overrides: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        password_hash_cost="low",
        payment_provider_url="http://127.0.0.1:9",
        **overrides,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_register_and_log_in_have_separate_budgets(tmp_path: Path) -> None:
    async with open_app(tmp_path, auth_rate_limit_per_minute=3) as client:
        for n in range(3):
            answer = await client.post(
                REGISTER,
                json={"email": f"u{n}@example.com", "password": "a long password", "name": "U"},
            )
            assert answer.status_code == 201
        refused = await client.post(
            REGISTER, json={"email": "u9@example.com", "password": "a long password", "name": "U"}
        )
        assert refused.status_code == 429
        login = await client.post(LOGIN, json={"email": "u0@example.com", "password": "no"})
        assert login.status_code == 401  # not 429: registering did not spend it


async def test_failed_logins_lock_their_account_only(tmp_path: Path) -> None:
    async with open_app(
        tmp_path, auth_rate_limit_per_minute=1000, login_failures_per_account=3
    ) as client:
        for name in ("ada", "grace"):
            registered = await client.post(
                REGISTER,
                json={
                    "email": f"{name}@example.com",
                    "password": f"{name} is my pass",
                    "name": name,
                },
            )
            assert registered.status_code == 201
        # Successful logins cost nothing.
        for _ in range(5):
            ok = await client.post(
                LOGIN, json={"email": "grace@example.com", "password": "grace is my pass"}
            )
            assert ok.status_code == 200
        # Three failures, spelled as identity would normalise them, exhaust ada's budget...
        for spelling in ("ada@example.com", "Ada@Example.com", "ADA@EXAMPLE.COM"):
            wrong = await client.post(LOGIN, json={"email": spelling, "password": "guess"})
            assert wrong.status_code == 401
        # ...and the right password is refused too, before it is checked.
        locked = await client.post(
            LOGIN, json={"email": "ada@example.com", "password": "ada is my pass"}
        )
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert locked.headers["content-type"].startswith("application/problem+json")
        # Grace is not ada.
        ok = await client.post(
            LOGIN, json={"email": "grace@example.com", "password": "grace is my pass"}
        )
        assert ok.status_code == 200

"""A login flood at the real password cost must not stall the process (issue 11, item 3):
what the machine cannot hash now is refused at once (503 with ``Retry-After``), and the
rest of the API keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import start_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root horse battery staple"
FLOOD = 60


async def test_a_login_flood_is_refused_in_part_and_health_answers_meanwhile(
    tmp_path: Path,
) -> None:
    process, url = start_app(
        tmp_path,
        {
            "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
            # The production cost: the one that stalled the process.
            "CLEAVE_PASSWORD_HASH_COST": "default",
            "CLEAVE_PAYMENT_PROVIDER_URL": "http://127.0.0.1:9",
            "CLEAVE_LOG_LEVEL": "WARNING",
            # Only the hashing bound is under test here, not the rate limits.
            "CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE": "100000",
            "CLEAVE_LOGIN_FAILURES_PER_ACCOUNT": "100000",
            "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
            "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
    )
    try:
        limits = httpx.Limits(max_connections=FLOOD + 5)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            done: list[httpx.Response] = []
            first_answer = asyncio.Event()

            async def log_in() -> None:
                done.append(await client.post("/api/v1/identity/login", json=credentials))
                first_answer.set()

            flood = [asyncio.create_task(log_in()) for _ in range(FLOOD)]
            await first_answer.wait()  # the flood has reached the server
            started = time.monotonic()
            live = await client.get("/health/live")
            took = time.monotonic() - started
            answered_during_flood = len(done) < FLOOD
            await asyncio.gather(*flood)
        print(f"/health/live answered in {took:.3f} s during a flood of {FLOOD} logins")
        assert live.status_code == 200
        assert answered_during_flood, "the flood was over before /health/live answered"
        statuses = sorted(response.status_code for response in done)
        assert set(statuses) <= {200, 503}, statuses  # never a 500
        assert 200 in statuses  # what fits is served
        refused = [response for response in done if response.status_code == 503]
        assert refused, "no login was refused: the hashes queued without bound"
        for response in refused:
            assert int(response.headers["retry-after"]) > 0
            assert response.headers["content-type"].startswith("application/problem+json")
    finally:
        process.close()

"""A body nested deeper than the decoder will go is the client's mistake: 400, on every route
that takes a body (issue 11, item 6; it used to be a 500 from a RecursionError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.settings import Settings

pytestmark = pytest.mark.anyio

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root horse battery staple"
DEEP_BODIES = {
    "arrays": "[" * 5000 + "]" * 5000,
    "objects": '{"a":' * 5000 + "1" + "}" * 5000,
}


def routes_with_a_body(schema: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                found.append((method.upper(), path.replace("{", "").replace("}", "")))
    return found


async def test_a_deeply_nested_body_is_a_bad_request_on_every_route(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        password_hash_cost="low",
        payment_provider_url="http://127.0.0.1:9",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        auth_rate_limit_per_minute=1000,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        login = await client.post(
            "/api/v1/identity/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        # The admin is a customer too: every route lets this token through to its body.
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        routes = routes_with_a_body((await client.get("/schema/openapi.json")).json())
        assert ("POST", "/api/v1/identity/register") in routes
        assert ("POST", "/api/v1/orders") in routes
        for method, path in routes:
            for shape, body in DEEP_BODIES.items():
                answer = await client.request(
                    method,
                    path,
                    content=body,
                    headers={**headers, "content-type": "application/json"},
                )
                assert answer.status_code == 400, (method, path, shape, answer.text)
                assert answer.headers["content-type"].startswith("application/problem+json")

"""The app a new user starts: health, the interactive API page, the schema, the warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.app import create_app
from entrypoints.settings import Settings

pytestmark = pytest.mark.anyio


async def test_health_docs_and_schema_answer(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health/live")).json() == {"status": "ok"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"runtime": True, "database": True}

        page = await client.get("/docs", follow_redirects=False)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "SwaggerUIBundle" in page.text

        schema = (await client.get("/schema/openapi.json")).json()
        for path in (
            "/api/v1/identity/login",
            "/api/v1/catalog/products",
            "/api/v1/inventory/{sku}",
            "/api/v1/orders",
            "/api/v1/payments/{order_id}",
            "/api/v1/notifications",
        ):
            assert path in schema["paths"], path
        assert "BearerToken" in schema["components"]["securitySchemes"]


async def test_development_defaults_are_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    with caplog.at_level(logging.WARNING, logger="cleave"):
        async with AsyncTestClient(app=create_app(settings)) as client:
            assert (await client.get("/health/live")).status_code == 200
    assert "CLEAVE_JWT_SECRET is not set" in caplog.text

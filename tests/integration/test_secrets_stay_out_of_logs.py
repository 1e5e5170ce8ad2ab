"""A database error never puts a statement's parameters (password hashes, emails) in a log,
and an email that only outgrows its column once in lower case is a 400, not a database error.

PostgreSQL enforces column lengths (SQLite does not), so both run there.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from adapters.auth.passwords import Argon2PasswordHasher
from adapters.sqlalchemy.database import Database
from entrypoints.app import create_app
from entrypoints.settings import Settings
from modules.identity.tables import metadata, users
from tests.support.harness import drop_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PASSWORD = "correct horse battery"
#: "İ" is one character and two in lower case: 200 of them pass the contract's 254
#: characters as typed, and make 412 once normalised, past the 254 of the column.
LONG_ONCE_LOWERED = "İ" * 200 + "@example.com"


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url, schema=f"logs_{uuid.uuid4().hex[:10]}")
    try:
        await database.create_all([metadata])
        yield database
    finally:
        await drop_database(database)


async def test_a_failed_statement_shows_none_of_its_parameters(database: Database) -> None:
    password_hash = await Argon2PasswordHasher("low").hash(PASSWORD)
    row = {
        "id": "u1",
        "email": "x" * 300 + "@example.com",  # longer than the column: PostgreSQL refuses
        "name": "Ada",
        "password_hash": password_hash,
        "roles": "customer",
        "version": 0,
        "created_at": time.time(),
    }
    with pytest.raises(DBAPIError) as failed:
        async with database.engine.begin() as connection:
            await connection.execute(insert(users).values(**row))
    said = str(failed.value)
    assert "value too long" in said  # the error is still worth reading
    assert password_hash not in said and "$argon2" not in said
    assert "x" * 300 not in said


@pytest.fixture
async def app_on_postgres(postgres_url: str) -> AsyncIterator[Any]:
    schema = f"logs_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        database_url=postgres_url,
        database_schema=schema,
        password_hash_cost="low",
        jwt_secret="logs-test-secret-0123456789abcdefghij",
        payment_provider_url="http://127.0.0.1:9",  # never called here
        payment_provider_key="unused",
    )
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield client
    finally:
        await drop_database(Database(postgres_url, schema=schema))


async def test_an_email_too_long_once_lowered_is_a_400_and_logs_no_hash(
    app_on_postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_on_postgres
    account = {"email": LONG_ONCE_LOWERED, "password": PASSWORD, "name": "Ada"}
    with caplog.at_level(logging.DEBUG):
        registered = await client.post("/api/v1/identity/register", json=account)
        login = {"email": LONG_ONCE_LOWERED, "password": PASSWORD}
        logged_in = await client.post("/api/v1/identity/login", json=login)
    for response in (registered, logged_in):
        assert response.status_code == 400, response.text
        body = response.json()
        assert (body["code"], body["field"]) == ("identity.invalid_email", "email")
    logged = caplog.text + " ".join(str(record.exc_info) for record in caplog.records)
    assert "$argon2" not in logged
    assert PASSWORD not in logged

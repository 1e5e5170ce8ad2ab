"""Authentication at the edge, through the real app: register, log in, tokens, roles, limits.

Every error a client can cause is an ``application/problem+json`` body with a 4xx status;
a hook on the client fails the test on any 5xx, so "never a 500 for a client mistake" is
checked on every request of this file, not only where a test looks.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from adapters.sqlalchemy.database import Database
from entrypoints.app import create_app
from entrypoints.settings import Settings
from modules.identity.tables import users

pytestmark = pytest.mark.anyio

SECRET = "integration-test-secret-0123456789abcdef"
ADA = {"email": "Ada.Lovelace@Example.com", "password": "correct horse battery", "name": "Ada"}
CREDENTIALS = {"email": ADA["email"], "password": ADA["password"]}
ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root horse battery staple"
REGISTER, LOGIN, ME = "/api/v1/identity/register", "/api/v1/identity/login", "/api/v1/identity/me"

Client = AsyncTestClient[Any]
Open = Callable[..., AbstractAsyncContextManager[Client]]


async def never_a_server_error(response: httpx.Response) -> None:
    request = response.request
    assert response.status_code < 500, f"{request.method} {request.url} -> {response.status_code}"


@pytest.fixture
def open_app(tmp_path: Path) -> Open:
    """Opens the app (lifespan included) with test settings plus ``overrides``."""

    @asynccontextmanager
    async def open_app(**overrides: Any) -> AsyncIterator[Client]:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
            password_hash_cost="low",
            jwt_secret=SECRET,
            # Nothing here pays: an address that is never called spares starting the sandbox.
            payment_provider_url="http://127.0.0.1:9",
            **overrides,
        )
        async with AsyncTestClient(app=create_app(settings)) as client:
            client.event_hooks = {"request": [], "response": [never_a_server_error]}
            yield client

    return open_app


@pytest.fixture
async def client(open_app: Open) -> AsyncIterator[Client]:
    async with open_app() as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem body of ``response``, after checking its status and media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def post_in_chunks(
    client: Client, path: str, chunks: list[bytes]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST ``chunks`` as a chunked body (which the test client cannot send) straight to the
    app, on the app's event loop; returns the status, headers and body of the response."""
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    events.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "extensions": {},
    }
    with client.portal() as portal:
        portal.call(client.app, scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def log_in(client: Client, email: str, password: str) -> str:
    response = await client.post(LOGIN, json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


# -- the happy path ---------------------------------------------------------------------------


async def test_register_log_in_and_read_me(client: Client) -> None:
    registered = await client.post(REGISTER, json=ADA)
    assert registered.status_code == 201, registered.text
    user = registered.json()
    assert user == {
        "id": user["id"],
        "email": "ada.lovelace@example.com",
        "name": "Ada",
        "roles": ["customer"],
    }
    assert "password" not in registered.text

    logged_in = await client.post(
        LOGIN, json={"email": "ADA.LOVELACE@example.com", "password": ADA["password"]}
    )
    assert logged_in.status_code == 200, logged_in.text
    token = logged_in.json()
    assert token == {
        "access_token": token["access_token"],
        "token_type": "bearer",
        "expires_in": 3600,
    }

    me = await client.get(ME, headers=bearer(token["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == user


# -- what registration refuses ----------------------------------------------------------------


async def test_registering_an_email_twice_is_a_conflict(client: Client) -> None:
    assert (await client.post(REGISTER, json=ADA)).status_code == 201
    for email in (ADA["email"], ADA["email"].upper()):
        body = problem(await client.post(REGISTER, json={**ADA, "email": email}), 409)
        assert (body["code"], body["field"]) == ("identity.email_taken", "email")


async def test_a_weak_or_overlong_password_is_refused_naming_the_password(
    client: Client,
) -> None:
    for password in ["aaaaaaaaaaaa", "password123", "ada.lovelace"]:
        body = problem(await client.post(REGISTER, json={**ADA, "password": password}), 400)
        assert (body["code"], body["field"]) == ("identity.weak_password", "password"), password
    # Shorter than the schema's minLength (issue 13): refused at the edge, naming the field.
    for password in ["", "short"]:
        body = problem(await client.post(REGISTER, json={**ADA, "password": password}), 400)
        assert body["field"] == "password", password
    # Long enough, and still guessed in a few thousand tries: the problem says why.
    for password in ["aaaaaaaaab", "passwordpassword"]:
        body = problem(await client.post(REGISTER, json={**ADA, "password": password}), 400)
        assert (body["code"], body["field"]) == ("identity.weak_password", "password"), password
        assert body["detail"].startswith("the password is too easy to guess: Repeats like")
    body = problem(await client.post(REGISTER, json={**ADA, "password": "x" * 257}), 400)
    assert body["field"] == "password"


async def test_an_invalid_email_is_refused_naming_the_email(client: Client) -> None:
    for email in ["", "ada", "ada@example", "ada @example.com", "@example.com", 42, None]:
        body = problem(await client.post(REGISTER, json={**ADA, "email": email}), 400)
        assert body["field"] == "email", email


async def test_unknown_missing_or_misshapen_fields_are_refused(client: Client) -> None:
    refused = [
        (REGISTER, {**ADA, "roles": ["admin"]}),
        (REGISTER, {**ADA, "id": "chosen-by-me"}),
        (REGISTER, CREDENTIALS),  # no name
        (REGISTER, [ADA]),
        (LOGIN, {**CREDENTIALS, "remember_me": True}),
        (LOGIN, {"email": ADA["email"]}),
        (LOGIN, {**CREDENTIALS, "password": None}),
        (LOGIN, "ada"),
    ]
    for path, body in refused:
        problem(await client.post(path, json=body), 400)
    # Nothing was created on the way.
    problem(await client.post(LOGIN, json=CREDENTIALS), 401)


async def test_a_body_that_is_not_json_is_refused(client: Client) -> None:
    for content in (b"{not json", b"", b"\xff\xfe"):
        response = await client.post(
            REGISTER, content=content, headers={"content-type": "application/json"}
        )
        problem(response, 400)


# -- who may log in ---------------------------------------------------------------------------


async def test_a_wrong_password_and_an_unknown_email_are_refused_alike(client: Client) -> None:
    assert (await client.post(REGISTER, json=ADA)).status_code == 201
    wrong_password = {**CREDENTIALS, "password": "not the password"}
    unknown_email = {**CREDENTIALS, "email": "nobody@example.com"}
    wrong = problem(await client.post(LOGIN, json=wrong_password), 401)
    unknown = problem(await client.post(LOGIN, json=unknown_email), 401)
    assert wrong == unknown
    assert wrong["code"] == "identity.bad_credentials"


# -- tokens -----------------------------------------------------------------------------------


def forged(
    secret: str,
    *,
    expires_in: float,
    subject: str = "someone",
    roles: tuple[str, ...] = ("customer",),
) -> str:
    now = time.time()
    claims = {
        "sub": subject,
        "iat": int(now) - 7200,
        "exp": int(now + expires_in),
        "extras": {"roles": list(roles)},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_me_needs_a_valid_token(client: Client) -> None:
    user = (await client.post(REGISTER, json=ADA)).json()
    refused = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRhOnNlY3JldA=="},
        bearer(
            forged("another-secret-0123456789abcdef0123456789", expires_in=600, subject=user["id"])
        ),
        bearer(forged(SECRET, expires_in=-60, subject=user["id"])),  # expired a minute ago
        bearer(
            jwt.encode({"sub": user["id"], "exp": int(time.time()) + 600}, None, algorithm="none")
        ),
    ]
    for headers in refused:
        problem(await client.get(ME, headers=headers), 401)
    # The same claims, signed with the app's secret and not expired, are accepted.
    me = await client.get(ME, headers=bearer(forged(SECRET, expires_in=600, subject=user["id"])))
    assert me.status_code == 200


async def test_a_signed_token_for_no_account_is_refused(client: Client) -> None:
    # Whoever holds the signing secret (the public development one, say) can sign any
    # claims: a subject identity does not know is refused, admin or not.
    for subject in ("someone", "0" * 32, "x" * 300):
        token = forged(SECRET, expires_in=600, subject=subject, roles=("admin", "customer"))
        product = {"sku": "TEA-1", "name": "Tea", "price_cents": 450}
        created = await client.post("/api/v1/catalog/products", json=product, headers=bearer(token))
        assert "no longer exists" in problem(created, 401)["detail"]
        charges = await client.get("/api/v1/payments/some-order", headers=bearer(token))
        problem(charges, 401)
        problem(await client.get(ME, headers=bearer(token)), 401)
    assert (await client.get("/api/v1/catalog/products")).json() == []  # nothing was created


async def test_a_token_claiming_a_role_its_account_lacks_is_refused(open_app: Open) -> None:
    async with open_app(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD) as client:
        ada = (await client.post(REGISTER, json=ADA)).json()
        as_admin = forged(SECRET, expires_in=600, subject=ada["id"], roles=("admin", "customer"))
        product = {"sku": "TEA-1", "name": "Tea", "price_cents": 450}
        problem(
            await client.post("/api/v1/catalog/products", json=product, headers=bearer(as_admin)),
            401,
        )
        # Her own token, with the role she has, works.
        own = await log_in(client, ADA["email"], ADA["password"])
        assert (await client.get(ME, headers=bearer(own))).status_code == 200

        # An admin whose role is taken away (here in the database: identity has no command
        # for it yet) is refused with the token issued while they were one.
        token = await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        await demote(client, ADMIN_EMAIL)
        created = await client.post("/api/v1/catalog/products", json=product, headers=bearer(token))
        problem(created, 401)
        # Logging in again gives a token with the roles the account has now.
        again = await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert jwt.decode(again, SECRET, algorithms=["HS256"])["extras"]["roles"] == ["customer"]
        problem(
            await client.post("/api/v1/catalog/products", json=product, headers=bearer(again)),
            403,
        )


async def demote(client: Client, email: str) -> None:
    """Make the account ``email`` a customer only, behind identity's back."""
    settings: Settings = client.app.state.settings
    database = Database(settings.database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(
                update(users).where(users.c.email == email).values(roles="customer")
            )
    finally:
        await database.dispose()


async def test_a_customer_may_not_use_admin_routes(client: Client) -> None:
    assert (await client.post(REGISTER, json=ADA)).status_code == 201
    token = await log_in(client, ADA["email"], ADA["password"])
    product = {"sku": "TEA-1", "name": "Tea", "price_cents": 450}
    problem(await client.post("/api/v1/catalog/products", json=product, headers=bearer(token)), 403)
    restock = await client.post(
        "/api/v1/inventory/TEA-1/restock", json={"quantity": 5}, headers=bearer(token)
    )
    problem(restock, 403)
    # Without a token, the same routes ask who is calling first.
    problem(await client.post("/api/v1/catalog/products", json=product), 401)


async def test_the_configured_admin_can_use_admin_routes(open_app: Open) -> None:
    async with open_app(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD) as client:
        token = await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        me = await client.get(ME, headers=bearer(token))
        assert me.json()["roles"] == ["admin", "customer"]
        product = {"sku": "TEA-1", "name": "Tea", "price_cents": 450}
        created = await client.post("/api/v1/catalog/products", json=product, headers=bearer(token))
        assert created.status_code == 201, created.text
        restocked = await client.post(
            "/api/v1/inventory/TEA-1/restock", json={"quantity": 5}, headers=bearer(token)
        )
        assert restocked.status_code == 200, restocked.text
    # A restart ensures the same admin again, without a second account.
    async with open_app(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD) as client:
        again = await client.get(
            ME, headers=bearer(await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD))
        )
        assert again.json() == me.json()


# -- limits -----------------------------------------------------------------------------------


async def test_logins_beyond_the_limit_are_throttled(open_app: Open) -> None:
    async with open_app(auth_rate_limit_per_minute=3) as client:
        for _ in range(3):
            wrong = {**CREDENTIALS, "password": "not the password"}
            problem(await client.post(LOGIN, json=wrong), 401)
        # The limit holds for the right password too; registering has a budget of its own.
        throttled = await client.post(LOGIN, json=CREDENTIALS)
        problem(throttled, 429)
        assert int(throttled.headers["retry-after"]) > 0  # when to come back
        assert (await client.post(REGISTER, json=ADA)).status_code == 201
        # Routes that do not ask for throttling are not throttled.
        assert (await client.get("/api/v1/catalog/products")).status_code == 200


async def test_a_body_above_the_limit_is_refused(open_app: Open) -> None:
    async with open_app(max_body_bytes=1024) as client:
        big = {**ADA, "name": "A" * 2000}
        problem(await client.post(REGISTER, json=big), 413)

        # Without a Content-Length the limit holds too: the body is counted as it arrives.
        status, headers, _ = post_in_chunks(client, REGISTER, [b" " * 256] * 8)
        assert status == 413
        assert headers[b"content-type"].startswith(b"application/problem+json")
        # Below the limit, chunks make a body like any other.
        grace = json.dumps({**ADA, "email": "grace@example.com"}).encode()
        status, _, body = post_in_chunks(client, REGISTER, [grace[:20], grace[20:]])
        assert status == 201, body
        assert (await client.post(REGISTER, json=ADA)).status_code == 201

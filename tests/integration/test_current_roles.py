"""What the edge checks each token against: the roles identity says a user holds now, asked
over the bus as the system (over every transport: a gateway asks a remote identity), and
kept a few seconds so that a burst of requests costs one query."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from adapters.auth.accounts import CurrentRoles
from adapters.http.auth import JwtTokenIssuer, jwt_auth
from adapters.http.problems import EXCEPTION_HANDLERS
from kernel import SYSTEM, Unavailable
from modules.identity.contracts import EnsureAdmin, RegisterUser
from modules.identity.module import module as identity
from tests.support.harness import running_shop

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


class Clock:
    """The cache's timer, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_roles_come_from_identity_and_are_kept_for_their_ttl(
    sqlite_url: str, transport: str
) -> None:
    async with running_shop(sqlite_url, transport=transport, modules=[identity]) as shop:
        ada = await shop.bus.send(
            RegisterUser(email="ada@example.com", password=PASSWORD, name="Ada")
        )
        clock = Clock()
        roles = CurrentRoles(lambda: shop.bus, ttl_seconds=5, timer=clock)
        assert await roles.of(ada.id) == {"customer"}
        assert await roles.of("0" * 32) is None  # no such user
        assert await roles.of("x" * 300) is None  # no user id looks like that

        await shop.bus.send(
            EnsureAdmin(email="ada@example.com", password=PASSWORD), principal=SYSTEM
        )
        clock.now = 4.9
        assert await roles.of(ada.id) == {"customer"}  # the answer of a moment ago
        clock.now = 5.1
        assert await roles.of(ada.id) == {"admin", "customer"}  # asked again


async def test_before_the_process_runs_a_token_cannot_be_checked() -> None:
    with pytest.raises(Unavailable):
        await CurrentRoles(lambda: None).of("someone")


async def test_a_token_that_cannot_be_checked_now_is_a_503_not_a_500() -> None:
    @get("/mine")
    async def mine() -> str:
        return "yours"

    secret = "roles-test-secret-0123456789abcdefghij"
    app = Litestar(
        route_handlers=[mine],
        exception_handlers=EXCEPTION_HANDLERS,
        # A process whose bus does not run yet cannot ask identity.
        on_app_init=[jwt_auth(secret, 60, CurrentRoles(lambda: None)).on_app_init],
    )
    token, _ = JwtTokenIssuer(secret, 60).issue("someone", ("customer",))
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/mine", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")

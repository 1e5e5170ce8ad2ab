"""Identity's public REST routes: register, log in, and who am I. They talk to the bus only."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from kernel import Bus, Principal
from modules.identity.contracts import (
    AccessToken,
    Email,
    GetUser,
    LogIn,
    Password,
    RegisterUser,
    User,
    UserName,
)


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: UserName


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password


class IdentityController(Controller):
    path = "/api/v1/identity"
    tags = ["identity"]

    @post(
        "/register",
        exclude_from_auth=True,
        opt={"rate_limited": True},
        summary="Create a customer account",
        description="409 if the email is registered (case-insensitively), 400 naming "
        "`password` for a password too easy to guess (saying why), or `email` for one longer "
        "than 254 characters once in lower case.",
    )
    async def register(self, data: JSONBody[Registration], bus: NamedDependency[Bus]) -> User:
        return await bus.send(
            RegisterUser(email=data.email, password=data.password, name=data.name)
        )

    @post(
        "/login",
        exclude_from_auth=True,
        opt={"rate_limited": True},
        status_code=200,
        summary="Exchange email and password for a bearer token",
        description="401 for an unknown email or a wrong password alike.",
    )
    async def log_in(self, data: JSONBody[Credentials], bus: NamedDependency[Bus]) -> AccessToken:
        return await bus.send(LogIn(email=data.email, password=data.password))

    @get("/me", summary="The caller's account")
    async def me(self, bus: NamedDependency[Bus], principal: NamedDependency[Principal]) -> User:
        return await bus.ask(GetUser(user_id=principal.subject), principal=principal)


#: The public routes of identity, served by whichever process hosts the public API.
routes = [IdentityController]

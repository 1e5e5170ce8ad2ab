"""Identity's public REST routes: register, log in, and who am I. They talk to the bus only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
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
from modules.identity.domain import MAX_EMAIL_LENGTH, MIN_PASSWORD_LENGTH

_EMAIL: msgspec.Meta = Email.__metadata__[0]
_PASSWORD: msgspec.Meta = Password.__metadata__[0]
#: Not '@', no space and no NUL (the edge refuses it). JSON Schema reads a pattern as
#: ECMAScript does, whose ``\s`` lacks the separators \x1c-\x1f and \x85 that Python's has
#: (and has \ufeff, which Python's lacks): naming them keeps both readings the same.
_NOT_AT_OR_SPACE = r"[^@\s\x00\x1c-\x1f\x85\ufeff]+"
EmailAddress = Annotated[
    str,
    msgspec.Meta(
        min_length=_EMAIL.min_length,
        max_length=MAX_EMAIL_LENGTH,
        pattern=f"^{_NOT_AT_OR_SPACE}@{_NOT_AT_OR_SPACE}\\.{_NOT_AT_OR_SPACE}$",
        description=f"Compared in lower case, which must not outgrow {MAX_EMAIL_LENGTH} "
        "characters either (a 400 naming `email`).",
        examples=_EMAIL.examples,
    ),
]
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=_PASSWORD.max_length,
        description=_PASSWORD.description,
    ),
]


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: EmailAddress
    password: NewPassword
    name: UserName


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: EmailAddress
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
        responses={409: ResponseSpec(None, description="This email is registered already")},
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
        description="401 for an unknown email or a wrong password alike; 400 naming `email` "
        "for one longer than 254 characters once in lower case.",
        responses={401: ResponseSpec(None, description="Unknown email or wrong password")},
    )
    async def log_in(self, data: JSONBody[Credentials], bus: NamedDependency[Bus]) -> AccessToken:
        return await bus.send(LogIn(email=data.email, password=data.password))

    @get("/me", summary="The caller's account")
    async def me(self, bus: NamedDependency[Bus], principal: NamedDependency[Principal]) -> User:
        return await bus.ask(GetUser(user_id=principal.subject), principal=principal)


#: The public routes of identity, served by whichever process hosts the public API.
routes = [IdentityController]

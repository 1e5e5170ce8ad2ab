"""Identity: who the users are, their roles, and the access tokens that prove it.

Passwords are stored only as slow hashes. ``LogIn`` answers a bearer token signed by the
edge's secret; the token carries the user id and roles, which become the ``Principal`` of
every message the user's requests cause.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from kernel import Command, Event, Query

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        examples=["ada@example.com"],
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        max_length=256,
        description="At least 10 characters, not the email, and hard to guess: zxcvbn must "
        "score it 3 of 4 or more (a few uncommon words make one).",
    ),
]
UserName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Role = Literal["customer", "admin"]

#: Error codes a caller may see.
EMAIL_TAKEN = "identity.email_taken"
INVALID_EMAIL = "identity.invalid_email"
WEAK_PASSWORD = "identity.weak_password"
BAD_CREDENTIALS = "identity.bad_credentials"
USER_NOT_FOUND = "identity.user_not_found"
NOT_ALLOWED = "identity.not_allowed"


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A user as others see it (never with the password hash)."""

    id: UserId
    email: Email
    name: UserName
    roles: list[Role]


class UserRoles(msgspec.Struct, frozen=True, kw_only=True):
    """The roles a user holds now (the edge checks a token's claims against them)."""

    user_id: UserId
    roles: list[Role]


class AccessToken(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


# -- commands -------------------------------------------------------------------------------


class RegisterUser(Command[User], frozen=True, kw_only=True, tag="identity.RegisterUser"):
    """Create a customer account. ``Conflict`` (email_taken) if the email is registered,
    ``Rejected`` (weak_password, field ``password``) for a weak password, ``Rejected``
    (invalid_email, field ``email``) for an email longer than 254 characters once in lower
    case. Emails are compared case-insensitively."""

    email: Email
    password: Password
    name: UserName


class LogIn(Command[AccessToken], frozen=True, kw_only=True, tag="identity.LogIn"):
    """Exchange email and password for an access token; ``Unauthenticated``
    (bad_credentials) otherwise, without saying which of the two was wrong. ``Rejected``
    (invalid_email) for an email no account can have (too long once in lower case)."""

    email: Email
    password: Password


class EnsureAdmin(Command[User], frozen=True, kw_only=True, tag="identity.EnsureAdmin"):
    """Create an admin account, or make an existing account an admin and set its password.
    Only the system principal (start-up, the CLI) may send it."""

    email: Email
    password: Password
    name: UserName = "Admin"


# -- queries --------------------------------------------------------------------------------


class GetUser(Query[User], frozen=True, kw_only=True, tag="identity.GetUser"):
    """One user; ``NotFound`` (user_not_found). A user may read themselves; admins anyone."""

    user_id: UserId


class GetUserRoles(Query[UserRoles], frozen=True, kw_only=True, tag="identity.GetUserRoles"):
    """The roles ``user_id`` holds now; ``NotFound`` (user_not_found) if there is no such
    user. Who may ask is who may read the user (``GetUser``): the edge asks as the system,
    for every token it accepts, so it answers without the rest of the account."""

    user_id: UserId


# -- events ---------------------------------------------------------------------------------


class UserRegistered(Event, frozen=True, kw_only=True, tag="identity.UserRegistered"):
    partition_key = "user_id"

    user_id: UserId
    email: Email
    name: UserName

"""Identity's rules that a random walk rarely reaches: races on one email, the admin account,
who may read whom, what is stored, and which events leave the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from adapters.auth.passwords import Argon2PasswordHasher
from adapters.sqlalchemy.database import Database
from kernel import (
    SYSTEM,
    Conflict,
    Forbidden,
    NotFound,
    Principal,
    Rejected,
    Unauthenticated,
)
from kernel.runtime import Runtime
from modules.identity.contracts import (
    EMAIL_TAKEN,
    INVALID_EMAIL,
    NOT_ALLOWED,
    USER_NOT_FOUND,
    WEAK_PASSWORD,
    EnsureAdmin,
    GetUser,
    GetUserRoles,
    LogIn,
    RegisterUser,
    User,
)
from modules.identity.dummy_hash import DummyHash
from modules.identity.module import module as identity
from modules.identity.tables import users
from tests.contracts.identity.observer.module import Seen, observer
from tests.support.harness import running_shop

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
ADMIN_PASSWORD = "admin horse battery"


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def shop(sqlite_url: str, transport: str, seen: Seen) -> AsyncIterator[Runtime]:
    async with running_shop(
        sqlite_url,
        transport=transport,
        modules=[identity, observer(seen)],  # type: ignore[arg-type]
    ) as runtime:
        yield runtime


async def register(shop: Runtime, email: str, password: str = PASSWORD, name: str = "Ada") -> User:
    return await shop.bus.send(RegisterUser(email=email, password=password, name=name))


async def log_in(shop: Runtime, email: str, password: str) -> bool:
    try:
        await shop.bus.send(LogIn(email=email, password=password))
    except Unauthenticated:
        return False
    return True


# -- registration -----------------------------------------------------------------------------


async def test_concurrent_registrations_of_one_email_make_one_account(
    shop: Runtime, seen: Seen
) -> None:
    spellings = ["ada@example.com", "ADA@example.com", "Ada@Example.com", "ada@EXAMPLE.COM"] * 3
    outcomes = await asyncio.gather(
        *(register(shop, email, name=f"Ada {n}") for n, email in enumerate(spellings)),
        return_exceptions=True,
    )
    accounts = [outcome for outcome in outcomes if isinstance(outcome, User)]
    refusals = [outcome for outcome in outcomes if not isinstance(outcome, User)]
    assert len(accounts) == 1, outcomes
    assert all(isinstance(error, Conflict) and error.code == EMAIL_TAKEN for error in refusals)
    assert accounts[0].email == "ada@example.com"
    assert await log_in(shop, "aDa@example.com", PASSWORD)
    assert await shop.settle()
    assert [event.user_id for event in seen.registrations] == [accounts[0].id]


async def test_registration_publishes_the_normalised_account(shop: Runtime, seen: Seen) -> None:
    user = await register(shop, "Grace.Hopper@Example.org", name="Grace")
    with pytest.raises(Conflict):
        await register(shop, "grace.hopper@example.org")
    assert await shop.settle()
    assert [(e.user_id, e.email, e.name) for e in seen.registrations] == [
        (user.id, "grace.hopper@example.org", "Grace")
    ]


#: One password per strength rule: length, the email's local part, the email itself, and
#: long enough but easy to guess (a repeated character or word, well known in any case, a
#: sequence, a keyboard row, a name).
WEAK_PASSWORDS = [
    "",
    "short",
    "ada.lovelace",
    "Ada.Lovelace@Example.com",
    "aaaaaaaaaaaaaaa",
    "aaaaaaaaab",
    "passwordpassword",
    "Password123",
    "qwertyuiop",
    "abcdefghijkl",
    "lovelace1815",
]


async def test_a_weak_password_is_refused_without_being_repeated(shop: Runtime) -> None:
    for password in WEAK_PASSWORDS:
        with pytest.raises(Rejected) as refused:
            await register(shop, "ada.lovelace@example.com", password)
        assert (refused.value.code, refused.value.field) == (WEAK_PASSWORD, "password")
        if len(password) > 5:
            assert password.lower() not in refused.value.detail.lower()
        assert not await log_in(shop, "ada.lovelace@example.com", password)


async def test_a_password_easy_to_guess_is_refused_saying_why(shop: Runtime) -> None:
    for password in ("aaaaaaaaab", "passwordpassword"):
        with pytest.raises(Rejected) as refused:
            await register(shop, "ada@example.com", password)
        assert (refused.value.code, refused.value.field) == (WEAK_PASSWORD, "password")
        assert refused.value.detail.startswith("the password is too easy to guess: ")
        assert "repeats" in refused.value.detail.lower()  # zxcvbn's reason
    # The user's own name counts as easy to guess too.
    with pytest.raises(Rejected):
        await register(shop, "ada@example.com", "Augusta Ada King", name="Augusta Ada King")
    assert await register(shop, "ada@example.com", "Augusta Ada King", name="Ada")


async def test_an_email_too_long_once_in_lower_case_is_refused_before_the_database(
    shop: Runtime,
) -> None:
    # "İ" is one character, its lower case two: 200 of them pass the contract's 254
    # characters as typed and are 400 once normalised, longer than the column.
    email = "İ" * 200 + "@example.com"
    for command in (
        RegisterUser(email=email, password=PASSWORD, name="Ada"),
        LogIn(email=email, password=PASSWORD),
    ):
        with pytest.raises(Rejected) as refused:
            await shop.bus.send(command)
        assert (refused.value.code, refused.value.field) == (INVALID_EMAIL, "email")
        assert "254" in refused.value.detail
    with pytest.raises(Rejected):
        await shop.bus.send(EnsureAdmin(email=email, password=PASSWORD), principal=SYSTEM)
    # At the limit, once normalised, the email is taken as any other.
    at_limit = "İ" * 121 + "@example.com"  # 242 + 12 = 254 characters in lower case
    assert len(at_limit.lower()) == 254
    assert (await register(shop, at_limit)).email == at_limit.lower()


async def test_only_a_hash_of_the_password_is_stored(shop: Runtime, sqlite_url: str) -> None:
    user = await register(shop, "ada@example.com")
    database = Database(sqlite_url)
    try:
        async with database.engine.connect() as connection:
            row = (await connection.execute(select(users).where(users.c.id == user.id))).one()
    finally:
        await database.dispose()
    assert PASSWORD not in " ".join(str(value) for value in row)
    assert row.password_hash.startswith("$argon2id$")
    assert await Argon2PasswordHasher("low").verify(row.password_hash, PASSWORD)
    assert (row.email, row.roles, row.version) == ("ada@example.com", "customer", 0)


# -- the admin account ------------------------------------------------------------------------


async def test_ensure_admin_creates_an_admin_once(shop: Runtime, seen: Seen) -> None:
    command = EnsureAdmin(email="Root@Example.com", password=ADMIN_PASSWORD)
    first = await shop.bus.send(command, principal=SYSTEM)
    again = await shop.bus.send(command, principal=SYSTEM)
    assert first == again
    assert (first.email, first.name, first.roles) == (
        "root@example.com",
        "Admin",
        ["admin", "customer"],
    )
    assert await log_in(shop, "root@example.com", ADMIN_PASSWORD)
    assert await shop.settle()
    assert [event.user_id for event in seen.registrations] == [first.id]


async def test_ensure_admin_promotes_an_account_and_resets_its_password(
    shop: Runtime, seen: Seen
) -> None:
    customer = await register(shop, "ada@example.com", name="Ada")
    admin = await shop.bus.send(
        EnsureAdmin(email="ADA@example.com", password=ADMIN_PASSWORD, name="Not Ada"),
        principal=SYSTEM,
    )
    assert (admin.id, admin.name, admin.roles) == (customer.id, "Ada", ["admin", "customer"])
    assert not await log_in(shop, "ada@example.com", PASSWORD)
    assert await log_in(shop, "ada@example.com", ADMIN_PASSWORD)
    assert await shop.settle()
    assert [event.user_id for event in seen.registrations] == [customer.id]  # no second one


async def test_ensure_admin_racing_a_registration_ends_with_one_admin(shop: Runtime) -> None:
    outcomes = await asyncio.gather(
        register(shop, "race@example.com"),
        shop.bus.send(
            EnsureAdmin(email="race@example.com", password=ADMIN_PASSWORD), principal=SYSTEM
        ),
        return_exceptions=True,
    )
    registered, ensured = outcomes
    assert isinstance(ensured, User), outcomes
    # Whoever won, there is one account, and it is the admin's.
    assert isinstance(registered, Conflict) or registered.id == ensured.id
    assert ensured.roles == ["admin", "customer"]
    assert await log_in(shop, "race@example.com", ADMIN_PASSWORD)


@pytest.mark.parametrize(
    "principal",
    [
        None,
        Principal(subject="someone", roles=("customer",)),
        Principal(subject="an-admin", roles=("admin", "customer")),
        Principal(subject="billing", roles=("admin",), kind="service"),
    ],
)
async def test_only_the_system_may_ensure_an_admin(
    shop: Runtime, principal: Principal | None
) -> None:
    with pytest.raises(Forbidden) as refused:
        await shop.bus.send(
            EnsureAdmin(email="root@example.com", password=ADMIN_PASSWORD), principal=principal
        )
    assert refused.value.code == NOT_ALLOWED
    assert not await log_in(shop, "root@example.com", ADMIN_PASSWORD)


async def test_ensure_admin_refuses_a_weak_password(shop: Runtime) -> None:
    with pytest.raises(Rejected) as refused:
        await shop.bus.send(
            EnsureAdmin(email="root@example.com", password="admin"), principal=SYSTEM
        )
    assert (refused.value.code, refused.value.field) == (WEAK_PASSWORD, "password")


# -- who may read whom ------------------------------------------------------------------------


async def test_a_user_reads_themselves_and_an_admin_reads_anyone(shop: Runtime) -> None:
    ada = await register(shop, "ada@example.com")
    root = await shop.bus.send(
        EnsureAdmin(email="root@example.com", password=ADMIN_PASSWORD), principal=SYSTEM
    )
    as_ada = Principal(subject=ada.id, roles=("customer",))
    as_root = Principal(subject=root.id, roles=("admin", "customer"))
    assert await shop.bus.ask(GetUser(user_id=ada.id), principal=as_ada) == ada
    assert await shop.bus.ask(GetUser(user_id=ada.id), principal=as_root) == ada
    assert await shop.bus.ask(GetUser(user_id=ada.id), principal=SYSTEM) == ada


async def test_reading_someone_else_looks_like_reading_no_one(shop: Runtime) -> None:
    ada = await register(shop, "ada@example.com")
    grace = await register(shop, "grace@example.com")
    as_grace = Principal(subject=grace.id, roles=("customer",))
    service = Principal(subject=ada.id, roles=(), kind="service")

    async def refusal(user_id: str, principal: Principal | None) -> Any:
        with pytest.raises(NotFound) as refused:
            await shop.bus.ask(GetUser(user_id=user_id), principal=principal)
        return refused.value

    for principal in (as_grace, service, None):
        existing, missing = await refusal(ada.id, principal), await refusal("0" * 32, principal)
        assert existing.code == missing.code == USER_NOT_FOUND
        assert existing.detail.replace(ada.id, "ID") == missing.detail.replace("0" * 32, "ID")


async def test_the_roles_a_user_holds_now_are_answered_to_who_may_read_them(
    shop: Runtime,
) -> None:
    ada = await register(shop, "ada@example.com")
    grace = await register(shop, "grace@example.com")
    query = GetUserRoles(user_id=ada.id)
    assert (await shop.bus.ask(query, principal=SYSTEM)).roles == ["customer"]
    as_ada = Principal(subject=ada.id, roles=("customer",))
    assert (await shop.bus.ask(query, principal=as_ada)).roles == ["customer"]
    # Made an admin: the answer follows.
    await shop.bus.send(EnsureAdmin(email="ada@example.com", password=PASSWORD), principal=SYSTEM)
    assert (await shop.bus.ask(query, principal=SYSTEM)).roles == ["admin", "customer"]
    as_grace = Principal(subject=grace.id, roles=("customer",))
    for user_id, principal in ((ada.id, as_grace), ("0" * 32, SYSTEM)):
        with pytest.raises(NotFound) as refused:
            await shop.bus.ask(GetUserRoles(user_id=user_id), principal=principal)
        assert (refused.value.code, refused.value.field) == (USER_NOT_FOUND, "user_id")


# -- logging in -------------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_fail_alike(shop: Runtime) -> None:
    await register(shop, "ada@example.com")
    errors = []
    for email, password in [("nobody@example.com", PASSWORD), ("ada@example.com", "wrong horse!")]:
        with pytest.raises(Unauthenticated) as refused:
            await shop.bus.send(LogIn(email=email, password=password))
        errors.append(refused.value)
    assert errors[0] == errors[1]


async def test_the_dummy_hash_costs_what_a_real_hash_costs() -> None:
    hasher = Argon2PasswordHasher("low")
    dummy = DummyHash(hasher)
    first = await dummy.get()
    assert await dummy.get() == first  # made once
    real = await hasher.hash(PASSWORD)
    # Same algorithm and parameters, so verifying either takes the same work.
    assert first.rsplit("$", 2)[0] == real.rsplit("$", 2)[0]
    assert not await hasher.verify(first, PASSWORD)

"""Identity driven through the bus by hypothesis, against a model of who registered what.

Random registrations (with case variations of a few emails, so duplicates are frequent),
weak and strong passwords, logins with right and wrong passwords, admin promotions and
reads. The model says what each step must answer; the machine checks the module does:

* a login succeeds exactly for a registered (email, password) pair, whatever the case of
  the email, and its token names that user and their roles;
* a second registration of an email, in any case, is a ``Conflict`` (email_taken), also
  when two registrations race;
* a weak password is ``Rejected`` (weak_password) naming the field ``password``;
* a user reads their own account, and nobody else's (``NotFound``, as if it did not exist).
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kernel import SYSTEM, Conflict, Forbidden, NotFound, Principal, Rejected, Unauthenticated
from modules.identity.contracts import (
    BAD_CREDENTIALS,
    EMAIL_TAKEN,
    NOT_ALLOWED,
    USER_NOT_FOUND,
    WEAK_PASSWORD,
    AccessToken,
    EnsureAdmin,
    GetUser,
    LogIn,
    RegisterUser,
    User,
)
from modules.identity.module import module as identity
from tests.support.harness import TEST_SETTINGS, SyncDriver
from tests.support.machines import ShopMachine, machine_for

#: Few emails, so that registrations collide often. Local parts are long enough (10+) that
#: a password equal to one passes the length rule and must be refused for being the email.
EMAILS = [
    "ada.lovelace@example.com",
    "grace.hopper@example.org",
    "katherine.johnson@example.net",
    "x@example.io",
]

#: Strong passwords, some shared between users so that "another user's password" happens.
STRONG = ["correct horse battery", "Tr0ub4dor&3-staple", "ünïcødé pässwörd ✓", "marmalade-sky-42"]

#: Characters a client can send: UTF-8 has no lone surrogates, which hypothesis draws too.
CHARACTERS = st.characters(codec="utf-8")

#: The machine's own idea of a weak password, one strategy per rule of the brief.
WEAK = st.one_of(
    st.text(CHARACTERS, max_size=9),  # too short (empty included)
    st.builds(lambda char, count: char * count, CHARACTERS, st.integers(10, 20)),
    st.sampled_from(["password123", "Password123", "QWERTYUIOP", "1234567890", "qwertyuiop"]),
)


def spellings(email: str) -> st.SearchStrategy[str]:
    """``email`` with any of its letters in upper case."""
    return st.lists(st.booleans(), min_size=len(email), max_size=len(email)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(email, upper, strict=True))
    )


SPELLED_EMAIL = st.sampled_from(EMAILS).flatmap(spellings)
STRONG_PASSWORD = st.one_of(
    st.sampled_from(STRONG),
    # Three uncommon words make it hard to guess (zxcvbn scores 4); the tail brings any
    # other character.
    st.builds(
        lambda words, tail: "-".join(words) + tail,
        st.permutations(["tangerines", "lighthouse", "quasarbeam"]),
        st.text(CHARACTERS, max_size=8),
    ),
)
#: A name equal to the whole password makes it guessable (zxcvbn weighs the user's name):
#: the machine's names are never one of its passwords.
NAMES = st.text(CHARACTERS, min_size=1, max_size=30).filter(lambda name: name not in STRONG)


class IdentityMachine(ShopMachine):
    modules = [identity]

    def __init__(self) -> None:
        super().__init__()
        #: normalised email -> (user id, password, roles)
        self.accounts: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    # -- helpers ------------------------------------------------------------------------------

    def send(self, command: Any, principal: Principal | None = None) -> Any:
        return self.run(self.bus.send(command, principal=principal))

    def expect(self, error: type[Exception], command: Any, **kwargs: Any) -> Any:
        with pytest.raises(error) as caught:
            self.send(command, **kwargs)
        return caught.value

    def registered(self, user: User, email: str, password: str, roles: tuple[str, ...]) -> None:
        assert user.email == email.lower()
        assert tuple(user.roles) == roles
        self.accounts[email.lower()] = (user.id, password, roles)

    # -- rules --------------------------------------------------------------------------------

    @rule(email=SPELLED_EMAIL, password=STRONG_PASSWORD, name=NAMES)
    def register(self, email: str, password: str, name: str) -> None:
        command = RegisterUser(email=email, password=password, name=name)
        if email.lower() in self.accounts:
            error = self.expect(Conflict, command)
            assert (error.code, error.field) == (EMAIL_TAKEN, "email")
        else:
            user = self.send(command)
            assert user.name == name
            self.registered(user, email, password, ("customer",))

    @rule(email=SPELLED_EMAIL, password=WEAK, name=NAMES)
    def register_weak(self, email: str, password: str, name: str) -> None:
        # The password is judged before the email: a weak one is refused even for a duplicate.
        error = self.expect(Rejected, RegisterUser(email=email, password=password, name=name))
        assert (error.code, error.field) == (WEAK_PASSWORD, "password")

    @rule(email=SPELLED_EMAIL, whole=st.booleans(), respell=st.booleans())
    def register_with_the_email_as_password(self, email: str, whole: bool, respell: bool) -> None:
        password = email if whole else email.partition("@")[0]
        password = password.swapcase() if respell else password
        error = self.expect(Rejected, RegisterUser(email=email, password=password, name="Me"))
        assert (error.code, error.field) == (WEAK_PASSWORD, "password")

    @rule(email=SPELLED_EMAIL, password=STRONG_PASSWORD)
    def register_twice_at_once(self, email: str, password: str) -> None:
        async def both() -> list[Any]:
            commands = [
                RegisterUser(email=spelled, password=password, name="Twin")
                for spelled in (email, email.swapcase())
            ]
            sends = [self.bus.send(command) for command in commands]
            return await asyncio.gather(*sends, return_exceptions=True)

        outcomes = self.run(both())
        users = [outcome for outcome in outcomes if isinstance(outcome, User)]
        conflicts = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
        assert len(users) + len(conflicts) == 2, outcomes
        assert all(conflict.code == EMAIL_TAKEN for conflict in conflicts)
        if email.lower() in self.accounts:
            assert not users
        else:
            assert len(users) == 1, outcomes
            self.registered(users[0], email, password, ("customer",))

    @rule(email=SPELLED_EMAIL, password=st.one_of(STRONG_PASSWORD, WEAK))
    def log_in(self, email: str, password: str) -> None:
        command = LogIn(email=email, password=password)
        account = self.accounts.get(email.lower())
        if account is not None and account[1] == password:
            self.logged_in(self.send(command), account)
        else:
            error = self.expect(Unauthenticated, command)
            assert (error.code, error.detail) == (
                BAD_CREDENTIALS,
                "the email or the password is wrong",  # the same for both failures
            )

    @precondition(lambda self: self.accounts)
    @rule(data=st.data())
    def log_in_right(self, data: st.DataObject) -> None:
        email = data.draw(st.sampled_from(sorted(self.accounts)).flatmap(spellings))
        account = self.accounts[email.lower()]
        self.logged_in(self.send(LogIn(email=email, password=account[1])), account)

    @precondition(lambda self: self.accounts)
    @rule(data=st.data())
    def log_in_with_someone_elses_password(self, data: st.DataObject) -> None:
        email = data.draw(st.sampled_from(sorted(self.accounts)))
        others = {password for key, (_, password, _) in self.accounts.items() if key != email}
        password = data.draw(st.sampled_from(sorted(others | {"definitely-not-it"})))
        if password == self.accounts[email][1]:
            return  # two users may share a password
        self.expect(Unauthenticated, LogIn(email=email, password=password))

    @rule(email=SPELLED_EMAIL, password=STRONG_PASSWORD)
    def ensure_admin(self, email: str, password: str) -> None:
        user = self.send(EnsureAdmin(email=email, password=password), principal=SYSTEM)
        known = self.accounts.get(email.lower())
        if known is not None:
            assert user.id == known[0]  # promoted, not duplicated
        self.registered(user, email, password, ("admin", "customer"))

    @rule(email=SPELLED_EMAIL, password=STRONG_PASSWORD, subject=st.sampled_from(["u", "admin"]))
    def ensure_admin_as_a_user(self, email: str, password: str, subject: str) -> None:
        principal = Principal(subject=subject, roles=("admin", "customer"))
        command = EnsureAdmin(email=email, password=password)
        error = self.expect(Forbidden, command, principal=principal)
        assert error.code == NOT_ALLOWED

    @precondition(lambda self: self.accounts)
    @rule(data=st.data())
    def read_accounts(self, data: st.DataObject) -> None:
        reader_email, read_email = (
            data.draw(st.sampled_from(sorted(self.accounts)), label=label)
            for label in ("reader", "read")
        )
        reader_id, _, reader_roles = self.accounts[reader_email]
        read_id, _, read_roles = self.accounts[read_email]
        reader = Principal(subject=reader_id, roles=reader_roles)
        query = GetUser(user_id=read_id)
        if reader_id == read_id or "admin" in reader_roles:
            user = self.run(self.bus.ask(query, principal=reader))
            assert (user.id, user.email, tuple(user.roles)) == (read_id, read_email, read_roles)
        else:
            with pytest.raises(NotFound) as caught:
                self.run(self.bus.ask(query, principal=reader))
            assert caught.value.code == USER_NOT_FOUND

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_account_reads_as_modelled(self) -> None:
        for email, (user_id, _, roles) in self.accounts.items():
            user = self.run(self.bus.ask(GetUser(user_id=user_id), principal=SYSTEM))
            assert (user.email, tuple(user.roles)) == (email, roles)

    # -- checks -------------------------------------------------------------------------------

    def logged_in(self, token: AccessToken, account: tuple[str, str, tuple[str, ...]]) -> None:
        user_id, _, roles = account
        assert token.token_type == "bearer"
        assert token.expires_in == TEST_SETTINGS.jwt_ttl_seconds
        claims = jwt.decode(token.access_token, TEST_SETTINGS.jwt_secret, algorithms=["HS256"])
        assert claims["sub"] == user_id
        assert tuple(claims["extras"]["roles"]) == roles


def test_identity_follows_its_model(driver: SyncDriver, transport: str) -> None:
    run_state_machine_as_test(
        machine_for(IdentityMachine, driver, transport),
        settings=settings(max_examples=10, stateful_step_count=20, deadline=None),
    )

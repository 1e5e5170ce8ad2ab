"""Identity's rules, in plain Python: emails, password strength, users and their roles."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kernel import Principal

#: The roles of an account made by registration, and of an admin.
CUSTOMER_ROLES: tuple[str, ...] = ("customer",)
ADMIN_ROLES: tuple[str, ...] = ("admin", "customer")

MIN_PASSWORD_LENGTH = 10

#: Passwords long enough to pass the length rule that every guesser tries first. Compared
#: case-insensitively. Not a breach corpus: a floor, not a strength meter.
WELL_KNOWN_PASSWORDS = frozenset(
    {
        "0123456789",
        "0987654321",
        "1234567890",
        "12345678910",
        "123456789a",
        "1234567890a",
        "1234512345",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "9876543210",
        "abc1234567",
        "abcdefghij",
        "administrator",
        "changeme123",
        "iloveyou123",
        "letmein123",
        "passw0rd123",
        "password1!",
        "password12",
        "password123",
        "password1234",
        "password123!",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "qwertyuiop",
        "qwertyuiop123",
        "trustno1234",
        "welcome123",
        "zaq12wsxcde",
    }
)


class WeakPassword(ValueError):
    """A password that breaks one of the strength rules; the message says which."""


def normalise_email(email: str) -> str:
    """The one spelling of an email the shop stores and compares (case-insensitive)."""
    return email.strip().lower()


def check_password(password: str, email: str) -> None:
    """Raise ``WeakPassword`` unless ``password`` is acceptable for the account ``email``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(set(password)) == 1:
        raise WeakPassword("the password repeats one character")
    folded = password.casefold()
    if folded in WELL_KNOWN_PASSWORDS:
        raise WeakPassword("the password is too well known")
    address = normalise_email(email).casefold()
    local_part = address.partition("@")[0]
    if folded in (address, local_part):
        raise WeakPassword("the password must not be the email address")


@dataclass(frozen=True)
class User:
    """An account. ``password_hash`` is a slow salted hash, never the password."""

    id: str
    email: str
    name: str
    password_hash: str
    roles: tuple[str, ...]
    created_at: float
    version: int = 0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def promoted(self, password_hash: str) -> User:
        """This user as an admin whose password has the hash ``password_hash``."""
        roles = tuple(dict.fromkeys((*ADMIN_ROLES, *self.roles)))
        return replace(self, roles=roles, password_hash=password_hash)


def may_read(principal: Principal | None, user_id: str) -> bool:
    """Whether ``principal`` may see the account ``user_id``: its owner, an admin, the system."""
    if principal is None:
        return False
    if principal.kind == "system" or principal.has_role("admin"):
        return True
    return principal.kind == "user" and principal.subject == user_id

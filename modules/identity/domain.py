"""Identity's rules, in plain Python: emails, password strength, users and their roles."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kernel import Principal

#: The roles of an account made by registration, and of an admin.
CUSTOMER_ROLES: tuple[str, ...] = ("customer",)
ADMIN_ROLES: tuple[str, ...] = ("admin", "customer")

#: The longest email stored (the column's length), counted once normalised: lower case may
#: be longer than what was typed ("İ" becomes two characters).
MAX_EMAIL_LENGTH = 254

MIN_PASSWORD_LENGTH = 10
#: zxcvbn's score runs from 0 to 4; 3 is 10^8 guesses or more, "safely unguessable:
#: moderate protection from offline slow-hash scenario" in zxcvbn's words (argon2id here).
MIN_PASSWORD_SCORE = 3
#: zxcvbn refuses longer input (its matching grows fast with length), so a password is
#: judged by its first 72 characters: weak ones are refused however the password goes on.
JUDGED_PASSWORD_LENGTH = 72


class WeakPassword(ValueError):
    """A password that breaks one of the strength rules; the message says which."""


class InvalidEmail(ValueError):
    """An email that cannot be stored once normalised; the message says why."""


def normalise_email(email: str) -> str:
    """The one spelling of an email the shop stores and compares (case-insensitive).

    Raises ``InvalidEmail`` when that spelling is longer than the shop stores."""
    normalised = email.strip().lower()
    if len(normalised) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(
            f"the email is longer than {MAX_EMAIL_LENGTH} characters once in lower case"
        )
    return normalised


def check_password(password: str, email: str, name: str = "") -> None:
    """Raise ``WeakPassword`` unless ``password`` is acceptable for the account ``email``
    of the person ``name``. The message never repeats the password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    address = email.strip().casefold()
    local_part = address.partition("@")[0]
    if password.casefold() in (address, local_part):
        raise WeakPassword("the password must not be the email address")
    # zxcvbn's patterns match with ".", which skips line breaks: judged as spaces, "\n" * 18
    # is the repetition it is, not 18 random characters.
    judged = password[:JUDGED_PASSWORD_LENGTH].replace("\n", " ")
    # Imported here: its dictionaries take about 12 MiB, which a process that never judges a
    # password (a service without identity, an identity that has not been asked yet) keeps.
    from zxcvbn import zxcvbn

    verdict = zxcvbn(judged, user_inputs=[address, local_part, name])
    if verdict["score"] < MIN_PASSWORD_SCORE:
        feedback = verdict["feedback"]
        advice = " ".join(filter(None, [feedback["warning"], *feedback["suggestions"]]))
        raise WeakPassword("the password is too easy to guess" + (f": {advice}" if advice else ""))


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
    if principal.administers:
        return True
    return principal.kind == "user" and principal.subject == user_id

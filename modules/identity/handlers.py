"""Identity's handlers: one per command and query.

Passwords exist in plain text only in the messages that carry them and in the calls to the
``PasswordHasher``; they are never stored, logged or put in an error.
"""

from __future__ import annotations

from kernel import (
    Bus,
    Clock,
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    NotFound,
    Principal,
    Rejected,
    Unauthenticated,
    new_entity_id,
)
from modules.identity import domain
from modules.identity.contracts import (
    BAD_CREDENTIALS,
    EMAIL_TAKEN,
    INVALID_EMAIL,
    NOT_ALLOWED,
    USER_NOT_FOUND,
    WEAK_PASSWORD,
    AccessToken,
    EnsureAdmin,
    GetUser,
    GetUserRoles,
    LogIn,
    RegisterUser,
    User,
    UserRegistered,
    UserRoles,
)
from modules.identity.dummy_hash import DummyHash
from modules.identity.ports import PasswordHasher, TokenIssuer
from modules.identity.repository import Users


async def register_user(
    command: RegisterUser, users: Users, hasher: PasswordHasher, clock: Clock, bus: Bus
) -> User:
    email = _normalised(command.email)
    _check_password(command.password, email, command.name)
    if await users.find_by_email(email) is not None:
        raise Conflict("this email is already registered", code=EMAIL_TAKEN, field="email")
    user = domain.User(
        id=new_entity_id(),
        email=email,
        name=command.name,
        password_hash=await hasher.hash(command.password),
        roles=domain.CUSTOMER_ROLES,
        created_at=clock.now(),
    )
    await users.add(user)  # a concurrent registration of the same email loses here
    await bus.publish(UserRegistered(user_id=user.id, email=user.email, name=user.name))
    return _view(user)


async def log_in(
    command: LogIn,
    users: Users,
    hasher: PasswordHasher,
    dummy: DummyHash,
    tokens: TokenIssuer,
) -> AccessToken:
    user = await users.find_by_email(_normalised(command.email))
    if user is None:
        await hasher.verify(await dummy.get(), command.password)  # as slow as a real check
        raise _bad_credentials()
    if not await hasher.verify(user.password_hash, command.password):
        raise _bad_credentials()
    token, expires_in = tokens.issue(user.id, user.roles)
    return AccessToken(access_token=token, expires_in=expires_in)


async def ensure_admin(
    command: EnsureAdmin,
    users: Users,
    hasher: PasswordHasher,
    clock: Clock,
    bus: Bus,
    principal: Principal | None,
) -> User:
    if principal is None or principal.kind != "system":
        raise Forbidden("only the system may ensure an admin account", code=NOT_ALLOWED)
    email = _normalised(command.email)
    _check_password(command.password, email, command.name)
    existing = await users.find_by_email(email)
    if existing is None:
        user = domain.User(
            id=new_entity_id(),
            email=email,
            name=command.name,
            password_hash=await hasher.hash(command.password),
            roles=domain.ADMIN_ROLES,
            created_at=clock.now(),
        )
        try:
            await users.add(user)
        except Conflict as error:
            # Registered meanwhile: run again from the start, which promotes that account.
            raise ConcurrencyConflict(f"{email} was registered meanwhile") from error
        await bus.publish(UserRegistered(user_id=user.id, email=user.email, name=user.name))
        return _view(user)
    if existing.is_admin and await hasher.verify(existing.password_hash, command.password):
        return _view(existing)  # already as asked: nothing to write
    promoted = existing.promoted(await hasher.hash(command.password))
    return _view(await users.save(promoted))


async def get_user(query: GetUser, users: Users, principal: Principal | None) -> User:
    # Someone who may not read an account learns nothing, not even that it exists.
    user = await users.get(query.user_id) if domain.may_read(principal, query.user_id) else None
    if user is None:
        raise NotFound(f"no user {query.user_id}", code=USER_NOT_FOUND, field="user_id")
    return _view(user)


async def get_user_roles(
    query: GetUserRoles, users: Users, principal: Principal | None
) -> UserRoles:
    user = await users.get(query.user_id) if domain.may_read(principal, query.user_id) else None
    if user is None:
        raise NotFound(f"no user {query.user_id}", code=USER_NOT_FOUND, field="user_id")
    return UserRoles(user_id=user.id, roles=list(user.roles))


def _normalised(email: str) -> str:
    # Checked here, before any statement: an overlong value would fail in the database.
    try:
        return domain.normalise_email(email)
    except domain.InvalidEmail as invalid:
        raise Rejected(str(invalid), code=INVALID_EMAIL, field="email") from None


def _check_password(password: str, email: str, name: str) -> None:
    try:
        domain.check_password(password, email, name)
    except domain.WeakPassword as weak:
        raise Rejected(str(weak), code=WEAK_PASSWORD, field="password") from None


def _bad_credentials() -> Unauthenticated:
    # One message for an unknown email and a wrong password: neither is revealed.
    return Unauthenticated("the email or the password is wrong", code=BAD_CREDENTIALS)


def _view(user: domain.User) -> User:
    return User(id=user.id, email=user.email, name=user.name, roles=list(user.roles))

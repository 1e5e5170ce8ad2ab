"""Users in identity's table."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from kernel import Conflict, Transaction, conflict_on, expect_one_row
from modules.identity.contracts import EMAIL_TAKEN
from modules.identity.domain import User
from modules.identity.tables import users


class Users:
    """The accounts, by id and by (normalised) email."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, user_id: str) -> User | None:
        connection = await self._transaction.connection()
        row = (await connection.execute(select(users).where(users.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def find_by_email(self, email: str) -> User | None:
        """The user with ``email``, which must already be normalised."""
        connection = await self._transaction.connection()
        row = (await connection.execute(select(users).where(users.c.email == email))).first()
        return None if row is None else _user(row)

    async def add(self, user: User) -> None:
        """Store a new user; ``Conflict`` (email_taken) if the email is registered."""
        connection = await self._transaction.connection()
        # Two registrations of one email raced past the lookup: the unique constraint
        # decides. The transaction is unusable now; the Conflict ends the unit of work.
        with conflict_on(
            IntegrityError,
            Conflict("this email is already registered", code=EMAIL_TAKEN, field="email"),
        ):
            await connection.execute(insert(users).values(**_row(user)))

    async def save(self, user: User) -> User:
        """Store a changed user; ``ConcurrencyConflict`` if someone changed it meanwhile."""
        connection = await self._transaction.connection()
        result = await connection.execute(
            update(users)
            .where(users.c.id == user.id, users.c.version == user.version)
            .values(
                name=user.name,
                password_hash=user.password_hash,
                roles=_roles_text(user.roles),
                version=user.version + 1,
            )
        )
        expect_one_row(result.rowcount, f"user {user.id}")
        return replace(user, version=user.version + 1)


def _roles_text(roles: tuple[str, ...]) -> str:
    return ",".join(roles)


def _row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "password_hash": user.password_hash,
        "roles": _roles_text(user.roles),
        "version": user.version,
        "created_at": user.created_at,
    }


def _user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        password_hash=row.password_hash,
        roles=tuple(role for role in row.roles.split(",") if role),
        created_at=row.created_at,
        version=row.version,
    )

"""The identity module's declaration."""

from __future__ import annotations

from typing import Any

from kernel import Module
from modules.identity import api, contracts, handlers
from modules.identity.dummy_hash import DummyHash
from modules.identity.repository import Users
from modules.identity.tables import metadata


def register(container: Any) -> None:
    # PasswordHasher and TokenIssuer are ports: the bootstrap binds their adapters.
    container.register(Users)
    container.register(DummyHash)


module = Module(
    name="identity",
    contracts=contracts,
    handlers={
        contracts.RegisterUser: handlers.register_user,
        contracts.LogIn: handlers.log_in,
        contracts.EnsureAdmin: handlers.ensure_admin,
        contracts.GetUser: handlers.get_user,
        contracts.GetUserRoles: handlers.get_user_roles,
    },
    wiring=register,
    routes=api.routes,
    tables=metadata,
)

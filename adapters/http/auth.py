"""Who is calling: JWT bearer tokens at the edge, turned into the ``Principal`` that travels
in every envelope. Routes declare what they need in their ``opt``: ``exclude_from_auth=True``
for public routes, ``roles=[...]`` for the roles allowed. The guard here enforces it, so
modules never import this adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any, Protocol

from litestar import Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTAuth, Token

from adapters.http.verified_tokens import VerifiedTokens
from kernel.messages import Principal

#: Paths that never need a token.
PUBLIC_PATHS = ["^/schema", "^/docs", "^/health", "^/metrics"]


class RolesOf(Protocol):
    """The roles a subject holds now (``adapters.auth.accounts.CurrentRoles``)."""

    async def of(self, subject: str) -> frozenset[str] | None:
        """None when there is no such subject."""
        ...


def principal_resolver(
    current_roles: RolesOf | None,
) -> Callable[[Token, ASGIConnection[Any, Any, Any, Any]], Awaitable[Principal]]:
    """Turns a verified token into the caller's ``Principal``, refusing (401) a token whose
    subject no longer exists or no longer holds every role it claims. Without
    ``current_roles`` the claims are taken as signed: only for an edge that reaches no
    identity module (a test of one module's routes)."""

    async def principal_from_token(
        token: Token, _connection: ASGIConnection[Any, Any, Any, Any]
    ) -> Principal:
        claimed = tuple(str(role) for role in token.extras.get("roles", ()))
        if current_roles is not None:
            held = await current_roles.of(token.sub)
            if held is None or not held.issuperset(claimed):
                raise NotAuthorizedException(
                    "this token's account no longer exists or no longer has the roles the "
                    "token names: log in again"
                )
        return Principal(subject=token.sub, roles=claimed, kind="user")

    return principal_from_token


class EdgeJWTAuth(JWTAuth[Principal, Token]):
    """litestar's JWT auth, without the security requirement it puts on the whole document:
    that one would say the public routes need a token too. ``adapters.http.openapi`` puts it
    on each operation this auth protects instead (the scheme stays in the components)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = app_config.openapi_config
        required = list(config.security) if config and config.security is not None else None
        app_config = super().on_app_init(app_config)
        if app_config.openapi_config is not None:
            app_config.openapi_config.security = required
        return app_config


def jwt_auth(
    secret: str, ttl_seconds: int, current_roles: RolesOf | None = None
) -> JWTAuth[Principal, Token]:
    return EdgeJWTAuth(
        retrieve_user_handler=principal_resolver(current_roles),
        token_secret=secret,
        token_cls=VerifiedTokens,
        default_token_expiration=timedelta(seconds=ttl_seconds),
        exclude=PUBLIC_PATHS,
        description="A bearer token from POST /api/v1/identity/login.",
    )


async def role_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Refuse (403) a caller who lacks every role the route lists in ``opt["roles"]``.

    Async on purpose: litestar runs a sync guard in a worker thread, a hop that cost every
    request (public and internal) about a fifth of its CPU."""
    roles = handler.opt.get("roles")
    if not roles:
        return
    user = connection.scope.get("user")
    if not isinstance(user, Principal) or not any(user.has_role(role) for role in roles):
        raise PermissionDeniedException(f"this needs the role {' or '.join(roles)}")


def provide_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller's principal, or None on a public route without a token."""
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


class JwtTokenIssuer:
    """Signs access tokens for the identity module (it knows nothing of JWT)."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, subject: str, roles: tuple[str, ...]) -> tuple[str, int]:
        from datetime import datetime

        token = Token(
            sub=subject,
            exp=datetime.now(UTC) + timedelta(seconds=self.ttl_seconds),
            extras={"roles": list(roles)},
        )
        return token.encode(secret=self._secret, algorithm="HS256"), self.ttl_seconds

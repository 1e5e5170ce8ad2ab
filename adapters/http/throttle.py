"""Throttles at the edge, on the routes that ask for it (``opt={"rate_limited": True}``:
log in, register), counted by the ``limits`` library in memory or in Redis.

* Each route has its own budget per client address: a flood of registrations does not
  spend the logins of the same address. The address is the peer's, or the one a trusted
  proxy forwarded (the server decides which proxies it trusts: ``CLEAVE_TRUSTED_PROXIES``).
* Failed attempts (401 answers) are counted per account, the normalised ``email`` of the
  body: past the budget, that account's attempts are refused before any password is
  checked, from every address, until the window moves on. Guessing one account's password
  from many addresses is as slow as from one.

Several instances of a gateway share their counts through Redis (``async+redis://``); one
process keeps them in memory. When the store does not answer, requests go through (a
warning says so, at most once a minute): an outage of Redis must not stop every login.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import msgspec
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from litestar.connection import Request
from litestar.exceptions import TooManyRequestsException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.quiet_log import EveryFewSeconds

log = logging.getLogger("cleave.http.throttle")


class _Attempt(msgspec.Struct):
    email: str | None = None


def storage_uri(kind: str, redis_url: str) -> str:
    """The ``limits`` storage URI for ``memory`` or for ``redis`` at ``redis_url``."""
    if kind == "memory":
        return "async+memory://"
    if kind == "redis":
        return "async+" + redis_url
    raise ValueError(f"unknown rate limit storage {kind!r}: use 'memory' or 'redis'")


class Throttle:
    """The budgets of one app, and the ASGI middleware that spends them."""

    def __init__(
        self,
        *,
        per_address_per_minute: int,
        account_failures: int,
        account_window_seconds: int,
        storage: str = "async+memory://",
        key_prefix: str = "cleave",
    ) -> None:
        options: dict[str, Any] = {}
        if storage.startswith("async+redis"):
            # redis-py is installed for the queue transport already; coredis is not.
            options = {"implementation": "redispy", "key_prefix": f"{key_prefix}-limits"}
        self.storage: Storage = storage_from_string(storage, wrap_exceptions=True, **options)
        self._limiter = MovingWindowRateLimiter(self.storage)
        self.per_address: RateLimitItem = RateLimitItemPerMinute(per_address_per_minute)
        self.account_failures: RateLimitItem = RateLimitItemPerSecond(
            account_failures, account_window_seconds
        )
        self._warn = EveryFewSeconds(60)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def throttled(scope: Scope, receive: Receive, send: Send) -> None:
            handler = scope.get("route_handler")
            if scope["type"] != "http" or handler is None or not handler.opt.get("rate_limited"):
                await app(scope, receive, send)
                return
            request: Request[Any, Any, Any] = Request(scope, receive)
            route = scope.get("path_template") or scope["path"]
            address = request.client.host if request.client else "unknown"
            if not await self._spend(self.per_address, "address", route, address):
                await self._refuse(self.per_address, "address", route, address)
            account = _account_of(await request.body())
            if account is not None and not await self._allows(
                self.account_failures, "failures", account
            ):
                await self._refuse(self.account_failures, "failures", account)

            status = 0

            async def watched(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await app(scope, receive, watched)
            if status == 401 and account is not None:
                await self._spend(self.account_failures, "failures", account)

        return throttled

    async def _spend(self, item: RateLimitItem, *key: str) -> bool:
        try:
            return await self._limiter.hit(item, *key)
        except StorageError as error:
            self._unavailable(error)
            return True

    async def _allows(self, item: RateLimitItem, *key: str) -> bool:
        try:
            return await self._limiter.test(item, *key)
        except StorageError as error:
            self._unavailable(error)
            return True

    async def _refuse(self, item: RateLimitItem, *key: str) -> None:
        try:
            reset, _ = await self._limiter.get_window_stats(item, *key)
            wait = max(1, math.ceil(reset - time.time()))
        except StorageError:
            wait = item.get_expiry()
        raise TooManyRequestsException(
            detail="too many attempts: try again later", headers={"Retry-After": str(wait)}
        )

    def _unavailable(self, error: StorageError) -> None:
        if self._warn.now():
            log.warning(
                "the rate limit store does not answer (%s): requests go through unthrottled",
                error.storage_error,
            )


def _account_of(body: bytes) -> str | None:
    """The normalised email of a login body (as identity normalises it), if it has one; a
    body that is not such JSON is left to the route to refuse."""
    try:
        email = msgspec.json.decode(body, type=_Attempt).email
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return email.strip().lower() if email else None

"""The calling side of the HTTP transport.

One ``HttpClient`` per process holds the pooled keep-alive connections (aiohttp, chosen by
measurement: ``bench/http_clients.py``) and a circuit breaker per remote instance (purgatory,
as the payment adapter). One ``HttpTransport`` per remote module spreads its calls
round-robin over the instances whose circuit is closed.

Semantics are the in-process ones: the reply carries the handler's result or its typed error,
raised here as the same exception type. What is not an answer (refused connection, timeout,
5xx, open circuit) is ``Unavailable``, and the deadline of the envelope bounds the call:

* a command is sent once; it moves to another instance only when its connection was refused,
  so it never ran;
* a query, and a delivery (the receiving inbox drops repeats), is tried on the next instance
  when an attempt fails, as long as the deadline allows.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from adapters.breakers import Breakers, CircuitOpen
from adapters.bus.http.signing import Signer
from kernel.bus import Call
from kernel.codec import Codec
from kernel.errors import Unavailable
from kernel.messages import Command, Envelope, Message

log = logging.getLogger("cleave.http")

REQUESTS_PATH = "/internal/v1/requests"
DELIVERIES_PATH = "/internal/v1/deliveries/{module}"
MEDIA_TYPES = {"json": "application/json", "msgpack": "application/msgpack"}
#: How long an idle pooled connection is kept for reuse.
KEEPALIVE_SECONDS = 4.0


class _NotSent(Exception):
    """The connection was refused: the request never reached the service."""


class _Failed(Exception):
    """The request may have reached the service, but no answer came back."""


def _log_circuit(target: str, state: str) -> None:
    log.warning("circuit of %s is now %s", target, state)


class HttpClient:
    """Pooled connections and per-instance circuit breakers, shared by every remote module."""

    def __init__(
        self,
        signer: Signer,
        *,
        timeout: float = 10.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        connections: int = 100,
    ) -> None:
        self.signer = signer
        self.timeout = timeout
        self.breaker_cooldown = breaker_cooldown
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.breakers = Breakers(breaker_threshold, breaker_cooldown, _log_circuit)

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise Unavailable("the HTTP transport is closed")
        if self._session is None:
            # Created in the running loop, on first use: the client is built before it.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections,
                    ttl_dns_cache=300,
                    # Below the server's keep-alive (uvicorn: 5 s): a connection the server
                    # is closing must not carry a command, which is never sent twice.
                    keepalive_timeout=KEEPALIVE_SECONDS,
                ),
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        """Release the connection pool. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def alive(self, url: str, within: float = 1.0) -> bool:
        """Whether the instance at ``url`` answers its liveness probe."""
        try:
            async with self._session_now().get(
                url + "/health/live", timeout=aiohttp.ClientTimeout(total=within)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, Unavailable):
            return False

    async def post(self, url: str, path: str, body: bytes, media_type: str, within: float) -> bytes:
        """POST a signed ``body`` to one instance inside its circuit breaker; the reply body.

        Raises ``_NotSent`` (connection refused, circuit open) or ``_Failed`` (no answer)."""
        try:
            async with self.breakers.guard(url):
                return await self._send(url, path, body, media_type, within)
        except CircuitOpen as error:
            raise _NotSent(str(error)) from None

    async def _send(
        self, url: str, path: str, body: bytes, media_type: str, within: float
    ) -> bytes:
        headers = self.signer.headers("POST", path, body)
        headers["content-type"] = media_type
        headers["accept"] = media_type
        try:
            async with self._session_now().post(
                url + path,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=within),
            ) as response:
                reply = await response.read()
                if response.status != 200:
                    raise _Failed(f"{url}{path} answered {response.status}: {reply[:200]!r}")
                return reply
        except aiohttp.ClientConnectorError as error:
            raise _NotSent(f"{url}: cannot connect ({error.os_error})") from error
        except TimeoutError as error:
            raise _Failed(f"{url} did not answer within {within:.2f}s") from error
        except aiohttp.ClientError as error:
            raise _Failed(f"{url}: {type(error).__name__}: {error}") from error


class HttpTransport:
    """Reaches the instances of one remote module over HTTP."""

    def __init__(
        self,
        client: HttpClient,
        codec: Codec,
        addresses: Sequence[str],
        *,
        module: str = "",
        attempts: int = 3,
    ) -> None:
        if not addresses:
            raise ValueError(f"no address for module {module!r}")
        self._client = client
        self._codec = codec
        self.addresses = [address.rstrip("/") for address in addresses]
        self._media_type = MEDIA_TYPES[codec.format]
        self._next = itertools.count()
        self._attempts = attempts
        self.module = module

    def requester(self, module: str, message: type[Message]) -> Call:
        retry_unsent_only = issubclass(message, Command)
        encode, decode = self._codec.encode, self._codec.decode_reply

        async def call(message: Message, envelope: Envelope) -> Any:
            reply = await self._exchange(
                REQUESTS_PATH, encode(envelope, message), envelope, retry_unsent_only
            )
            return decode(reply, type(message))

        return call

    def deliverer(self, module: str) -> Call:
        path = DELIVERIES_PATH.format(module=module)
        encode, decode = self._codec.encode, self._codec.decode_reply

        async def call(message: Message, envelope: Envelope) -> Any:
            reply = await self._exchange(path, encode(envelope, message), envelope, False)
            return decode(reply, type(message))

        return call

    async def _exchange(
        self, path: str, body: bytes, envelope: Envelope, retry_unsent_only: bool
    ) -> bytes:
        now = time.time()
        deadline = envelope.deadline or now + self._client.timeout
        tried: list[str] = []
        for attempt in range(self._attempts):
            remaining = deadline - time.time()
            if remaining <= 0:
                break
            url = self._pick()
            try:
                return await self._client.post(url, path, body, self._media_type, remaining)
            except _NotSent as error:
                tried.append(str(error))
            except _Failed as error:
                tried.append(str(error))
                if retry_unsent_only:
                    # It may have run: a command is never sent twice by the transport.
                    break
            if attempt + 1 < self._attempts and len(self.addresses) == 1:
                await asyncio.sleep(min(0.05 * (attempt + 1), max(0.0, remaining / 4)))
        detail = "; ".join(tried) or "the deadline passed before a call could be made"
        raise Unavailable(f"{envelope.name} to {self.module or 'a remote module'}: {detail}")

    def _pick(self) -> str:
        """The next instance round-robin, skipping those whose circuit is open."""
        count = len(self.addresses)
        start = next(self._next)
        for offset in range(count):
            url = self.addresses[(start + offset) % count]
            if self._client.breakers.callable(url):
                return url
        return self.addresses[start % count]  # every circuit is open: fail fast on one

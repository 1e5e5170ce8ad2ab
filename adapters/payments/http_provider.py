"""The payment provider over HTTP, with a deadline, bounded retries and a circuit breaker.

Every call to the provider:

* carries the ``Idempotency-Key`` header on every attempt, so a retried capture never charges
  twice (the provider answers a repeat with its first answer);
* has a per-attempt deadline (``timeout`` seconds);
* is retried by ``stamina`` with exponential backoff and jitter, ``attempts`` times at most, on
  timeouts, connection errors and 5xx answers only;
* runs inside a ``purgatory`` circuit breaker: after ``breaker_threshold`` failed calls in a
  row the circuit opens and calls fail fast, without a request, for ``breaker_cooldown``
  seconds; then one trial call goes through, and closes the circuit if it succeeds.

A decline is an answer, not a failure: it is returned and never trips the breaker. Whatever is
not an answer becomes ``kernel.Unavailable`` with a detail that says why.

The HTTP client is aiohttp (chosen by measurement: ``python -m bench.http_clients``). Its
``ClientSession`` belongs to an event loop, and the adapter is sometimes built before any loop
runs: the session is created on the first call, inside the running loop, and ``close()``
closes it there. Use one adapter on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
import stamina

from adapters.breakers import Breakers, CircuitOpen
from kernel import Unavailable
from modules.payments.contracts import PROVIDER_UNAVAILABLE
from modules.payments.ports import ProviderCharge

log = logging.getLogger("cleave.payments.provider")
T = TypeVar("T")

_CIRCUIT = "payment-provider"
#: Statuses whose JSON body is the provider's answer to a capture (402: invalid token).
_ANSWERS = {200, 201, 402}


class _ServerError(Exception):
    """A 5xx answer: the provider failed, a retry may succeed."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


#: aiohttp errors a retry may cure: the connection failed or broke, or the answer was garbled.
#: (Not ``InvalidURL`` and the like: the address is wrong and stays wrong.)
_TRANSPORT_ERRORS = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


def _retryable(error: Exception) -> bool:
    return isinstance(error, (_ServerError, TimeoutError, *_TRANSPORT_ERRORS))


@dataclass(frozen=True, slots=True)
class _Response:
    """A whole answer of the provider, read within the attempt's deadline."""

    status: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _CaptureAnswer(msgspec.Struct, kw_only=True):
    status: str
    id: str | None = None
    reason: str | None = None


_decode_answer = msgspec.json.Decoder(_CaptureAnswer).decode
_encode = msgspec.json.Encoder().encode


def _read_capture(response: _Response) -> ProviderCharge:
    """The provider's answer to a capture (inside the breaker: unreadable is a failure)."""
    try:
        answer = _decode_answer(response.content)
    except msgspec.DecodeError as error:
        raise Unavailable(
            f"the payment provider's capture answer is unreadable: {error}",
            code=PROVIDER_UNAVAILABLE,
        ) from error
    if answer.status not in ("captured", "declined", "voided"):
        raise Unavailable(
            f"the payment provider answered an unknown status {answer.status!r}",
            code=PROVIDER_UNAVAILABLE,
        )
    return ProviderCharge(
        provider_charge_id=answer.id,
        status=answer.status,  # type: ignore[arg-type]  # checked just above
        reason=answer.reason,
    )


def _read_void(response: _Response) -> None:
    if response.status != 200:
        raise Unavailable(
            f"the payment provider refused the void: HTTP {response.status}",
            code=PROVIDER_UNAVAILABLE,
        )


class HttpPaymentProvider:
    """``modules.payments.ports.PaymentProvider`` over the provider's HTTP API.

    One pooled ``aiohttp.ClientSession``, created by the first call in the running event loop,
    serves every call; ``close()`` releases it, after which calls fail as unavailable. The
    circuit state is ``breaker_state`` ("closed", "opened" or "half-opened"); changes are
    logged on ``cleave.payments.provider``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        attempts: int,
        breaker_threshold: int,
        breaker_cooldown: float,
        api_key: str | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if breaker_threshold < 1:
            raise ValueError("breaker_threshold must be at least 1")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        self._backoff = {
            "wait_initial": backoff_initial,
            "wait_max": backoff_max,
            "wait_jitter": backoff_initial,
        }
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        #: Created by the first call, in the running loop (see ``_get_session``).
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._breakers = Breakers(breaker_threshold, breaker_cooldown, self._on_circuit)

    @classmethod
    def from_settings(cls, url: str, settings: Any) -> HttpPaymentProvider:
        """Built from the ``payment_*`` fields of ``entrypoints.settings.Settings``."""
        return cls(
            url,
            timeout=settings.payment_timeout_seconds,
            attempts=settings.payment_attempts,
            breaker_threshold=settings.payment_breaker_threshold,
            breaker_cooldown=settings.payment_breaker_cooldown_seconds,
            api_key=getattr(settings, "payment_provider_key", None),
        )

    @property
    def breaker_state(self) -> str:
        """The circuit: ``closed``, ``opened`` or ``half-opened``.

        An open circuit whose cooldown has passed says ``opened`` until a call tries it.
        """
        return self._breakers.state(_CIRCUIT)

    async def close(self) -> None:
        """Release the connection pool (on the event loop that used it). Idempotent."""
        self._closed = True
        session, self._session, self._session_loop = self._session, None, None
        if session is not None:
            await session.close()

    # -- the port ---------------------------------------------------------------------------

    async def capture(
        self, *, idempotency_key: str, amount_cents: int, currency: str, token: str
    ) -> ProviderCharge:
        body = {
            "amount_cents": amount_cents,
            "currency": currency,
            "token": token,
            "reference": idempotency_key,
        }
        return await self._call("capture", "/v1/charges", idempotency_key, body, _read_capture)

    async def void(self, *, idempotency_key: str) -> None:
        path = f"/v1/charges/{quote(idempotency_key, safe='')}/void"
        await self._call("void", path, idempotency_key, None, _read_void)

    # -- the machinery ----------------------------------------------------------------------

    async def _call(
        self, operation: str, path: str, key: str, body: Any, read: Callable[[_Response], T]
    ) -> T:
        if self._closed:
            raise Unavailable(
                f"payment {operation}: the payment provider adapter is closed",
                code=PROVIDER_UNAVAILABLE,
            )
        try:
            async with self._breakers.guard(_CIRCUIT):
                return await self._attempts(operation, path, key, body, read)
        except CircuitOpen as error:
            if error.trial:
                detail = "the provider's circuit is open (a trial call is under way)"
            else:
                detail = (
                    f"the provider's circuit is open after {self.breaker_threshold} failed "
                    f"calls; failing fast for up to {self.breaker_cooldown}s"
                )
            raise Unavailable(f"payment {operation}: {detail}", code=PROVIDER_UNAVAILABLE) from None

    async def _attempts(
        self, operation: str, path: str, key: str, body: Any, read: Callable[[_Response], T]
    ) -> T:
        made = 0
        try:
            async for attempt in stamina.retry_context(
                on=_retryable, attempts=self.attempts, timeout=None, **self._backoff
            ):
                with attempt:
                    made = attempt.num
                    return read(await self._attempt(path, key, body))
        except TimeoutError as error:  # also aiohttp's own timeouts
            raise Unavailable(
                f"payment {operation}: the provider did not answer within {self.timeout}s "
                f"({made} attempts)",
                code=PROVIDER_UNAVAILABLE,
            ) from error
        except _ServerError as error:
            raise Unavailable(
                f"payment {operation}: the provider answered {error.status} after {made} attempts",
                code=PROVIDER_UNAVAILABLE,
            ) from error
        except aiohttp.ClientError as error:
            raise Unavailable(
                f"payment {operation}: cannot reach the provider at {self.url}: "
                f"{type(error).__name__} {error} ({made} attempts)",
                code=PROVIDER_UNAVAILABLE,
            ) from error
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _attempt(self, path: str, key: str, body: Any) -> _Response:
        session = self._get_session()
        # The same Idempotency-Key on every attempt: the provider charges once per key.
        headers = {"Idempotency-Key": key}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = _encode(body)
        # The deadline covers the whole attempt: connecting, sending and reading the body.
        async with asyncio.timeout(self.timeout):
            async with session.post(
                self.url + path,  # the key in ``path`` is escaped, and stays so
                data=data,
                headers=headers,
                allow_redirects=False,
            ) as answer:
                response = _Response(answer.status, await answer.read())
        status = response.status
        if status >= 500:
            raise _ServerError(status)
        if status in _ANSWERS:
            return response
        # 4xx other than a decline: our request or credentials are wrong. Retrying cannot
        # help, and it is not an answer about the charge.
        raise Unavailable(
            f"the payment provider refused the request: HTTP {status} {response.text[:200]}",
            code=PROVIDER_UNAVAILABLE,
        )

    def _get_session(self) -> aiohttp.ClientSession:
        """The pooled session, created on first use in the running event loop."""
        if self._closed:  # close() ran while this call was on its way
            raise Unavailable("the payment provider adapter is closed", code=PROVIDER_UNAVAILABLE)
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None:
            # No await between the check and the assignment: one session per adapter.
            session = aiohttp.ClientSession(
                headers=self._headers,
                # Idle connections are dropped after 5 s, as httpx did: servers often close
                # theirs after about that long, and a reused closed one costs an attempt.
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
            self._session, self._session_loop = session, loop
        elif self._session_loop is not loop:  # pragma: no cover - a misuse, said plainly
            raise RuntimeError(
                "HttpPaymentProvider is used on another event loop than the one it first ran "
                "on; build one adapter per event loop and close() it there"
            )
        return session

    def _on_circuit(self, name: str, state: str) -> None:
        if state == "opened":
            log.warning(
                "payment provider circuit opened: calls fail fast for %ss", self.breaker_cooldown
            )
        elif state == "half-opened":
            log.info("payment provider circuit half-open: one trial call goes through")
        else:
            log.info("payment provider circuit closed: calls go through again")

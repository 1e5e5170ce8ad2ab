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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec
import stamina
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

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


def _retryable(error: Exception) -> bool:
    return isinstance(error, (_ServerError, httpx.TransportError, TimeoutError))


class _CaptureAnswer(msgspec.Struct, kw_only=True):
    status: str
    id: str | None = None
    reason: str | None = None


_decode_answer = msgspec.json.Decoder(_CaptureAnswer).decode


def _read_capture(response: httpx.Response) -> ProviderCharge:
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


def _read_void(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise Unavailable(
            f"the payment provider refused the void: HTTP {response.status_code}",
            code=PROVIDER_UNAVAILABLE,
        )


class HttpPaymentProvider:
    """``modules.payments.ports.PaymentProvider`` over the provider's HTTP API.

    One pooled ``httpx.AsyncClient`` serves every call; ``close()`` releases it. The circuit
    state is ``breaker_state`` ("closed", "opened" or "half-opened"); changes are logged on
    ``cleave.payments.provider``.
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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_threshold,
            default_ttl=breaker_cooldown,
            # A call cancelled by its caller says nothing about the provider's health.
            exclude=[asyncio.CancelledError],
        )
        self._breakers.add_listener(self._on_breaker_event)
        self._breaker_lock = asyncio.Lock()
        self._breaker: Any = None
        #: Whether the one trial call of a half-open circuit is under way.
        self._trial_in_flight = False

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
        if self._breaker is None:
            return "closed"
        return str(self._breaker.context.state)

    async def close(self) -> None:
        """Release the connection pool."""
        await self._client.aclose()

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
        self, operation: str, path: str, key: str, body: Any, read: Callable[[httpx.Response], T]
    ) -> T:
        breaker = await self._get_breaker()
        trial = breaker.context.state != "closed"
        if trial and self._trial_in_flight:
            raise Unavailable(
                f"payment {operation}: the provider's circuit is open (a trial call is under "
                "way); failing fast",
                code=PROVIDER_UNAVAILABLE,
            )
        if trial:
            self._trial_in_flight = True
        try:
            async with breaker:
                return await self._attempts(operation, path, key, body, read)
        except OpenedState:
            raise Unavailable(
                f"payment {operation}: the provider's circuit is open after "
                f"{self.breaker_threshold} failed calls; failing fast for up to "
                f"{self.breaker_cooldown}s",
                code=PROVIDER_UNAVAILABLE,
            ) from None
        finally:
            if trial:
                self._trial_in_flight = False

    async def _attempts(
        self, operation: str, path: str, key: str, body: Any, read: Callable[[httpx.Response], T]
    ) -> T:
        made = 0
        try:
            async for attempt in stamina.retry_context(
                on=_retryable, attempts=self.attempts, timeout=None, **self._backoff
            ):
                with attempt:
                    made = attempt.num
                    return read(await self._attempt(path, key, body))
        except (TimeoutError, httpx.TimeoutException) as error:
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
        except httpx.TransportError as error:
            raise Unavailable(
                f"payment {operation}: cannot reach the provider at {self.url}: "
                f"{type(error).__name__} {error} ({made} attempts)",
                code=PROVIDER_UNAVAILABLE,
            ) from error
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _attempt(self, path: str, key: str, body: Any) -> httpx.Response:
        # The same Idempotency-Key on every attempt: the provider charges once per key.
        async with asyncio.timeout(self.timeout):
            response = await self._client.post(path, json=body, headers={"Idempotency-Key": key})
        status = response.status_code
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

    async def _get_breaker(self) -> Any:
        if self._breaker is None:
            async with self._breaker_lock:
                if self._breaker is None:
                    self._breaker = await self._breakers.get_breaker(_CIRCUIT)
        return self._breaker

    def _on_breaker_event(self, name: str, event_type: str, event: Any) -> None:
        if event_type != "state_changed":
            return
        if event.state == "opened":
            log.warning(
                "payment provider circuit opened: calls fail fast for %ss", self.breaker_cooldown
            )
        elif event.state == "half-opened":
            log.info("payment provider circuit half-open: one trial call goes through")
        else:
            log.info("payment provider circuit closed: calls go through again")

"""The HTTP payment provider adapter against the sandbox over real HTTP: retries, timeouts,
the circuit breaker and idempotency keys. No timing is asserted: cooldowns are tiny and the
tests poll or wait past them."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from entrypoints.settings import Settings
from kernel import Unavailable
from modules.payments.contracts import PROVIDER_UNAVAILABLE
from modules.payments.ports import ProviderCharge

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=0.3) as provider:
        yield provider


@pytest.fixture
async def providers() -> AsyncIterator[list[HttpPaymentProvider]]:
    """Adapters built by a test; each is closed afterwards."""
    built: list[HttpPaymentProvider] = []
    yield built
    for provider in built:
        await provider.close()


def adapter(
    providers: list[HttpPaymentProvider],
    url: str,
    *,
    timeout: float = 2.0,
    attempts: int = 3,
    breaker_threshold: int = 100,
    breaker_cooldown: float = 60.0,
    api_key: str | None = None,
) -> HttpPaymentProvider:
    provider = HttpPaymentProvider(
        url,
        timeout=timeout,
        attempts=attempts,
        breaker_threshold=breaker_threshold,
        breaker_cooldown=breaker_cooldown,
        api_key=api_key,
        backoff_initial=0.01,
        backoff_max=0.05,
    )
    providers.append(provider)
    return provider


async def capture(provider: HttpPaymentProvider, key: str, token: str) -> ProviderCharge:
    return await provider.capture(
        idempotency_key=key, amount_cents=500, currency="EUR", token=token
    )


def requests_made(sandbox: SandboxPaymentProvider) -> int:
    return int(httpx.get(f"{sandbox.url}/v1/stats").json()["requests"])


def charges_of(sandbox: SandboxPaymentProvider, reference: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox.url}/v1/charges", params={"reference": reference})
    result: list[dict[str, Any]] = response.json()
    return result


async def test_answers_are_returned(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(providers, sandbox.url)
    captured = await capture(provider, "order-1", "tok_ok")
    assert captured.status == "captured"
    assert captured.provider_charge_id == charges_of(sandbox, "order-1")[0]["id"]
    declined = await capture(provider, "order-2", "tok_declined")
    assert (declined.status, declined.reason) == ("declined", "card declined")
    invalid = await capture(provider, "order-3", "tok_unknown")
    assert (invalid.status, invalid.reason) == ("declined", "invalid token")


async def test_server_errors_are_retried_then_unavailable(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(providers, sandbox.url, attempts=3)
    with pytest.raises(Unavailable) as raised:
        await capture(provider, "order-1", "tok_error")
    assert raised.value.code == PROVIDER_UNAVAILABLE
    assert "500 after 3 attempts" in raised.value.detail
    assert requests_made(sandbox) == 3
    assert charges_of(sandbox, "order-1") == []


async def test_a_slow_provider_times_out(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    # Both attempts end before the sandbox answers (0.1 + 0.1 + backoff < 0.3 s). How many
    # requests reached it is not asserted: a cancelled attempt may not have been sent yet.
    provider = adapter(providers, sandbox.url, timeout=0.1, attempts=2)
    with pytest.raises(Unavailable) as raised:
        await capture(provider, "order-1", "tok_slow")
    assert raised.value.code == PROVIDER_UNAVAILABLE
    assert "did not answer within 0.1s (2 attempts)" in raised.value.detail


async def test_a_retried_capture_charges_once(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    # The first attempt times out (0.1 s < 0.3 s) while the sandbox goes on charging; the
    # retries carry the same key, so they wait for that charge instead of making another.
    provider = adapter(providers, sandbox.url, timeout=0.1, attempts=20)
    answer = await capture(provider, "order-1", "tok_slow")
    assert answer.status == "captured"
    assert requests_made(sandbox) >= 2
    assert [charge["id"] for charge in charges_of(sandbox, "order-1")] == [
        answer.provider_charge_id
    ]
    assert (await capture(provider, "order-1", "tok_slow")) == answer


async def test_void_cancels_a_capture(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(providers, sandbox.url)
    await capture(provider, "order-1", "tok_ok")
    await provider.void(idempotency_key="order-1")
    await provider.void(idempotency_key="order 2")  # keys are escaped in the path
    assert [charge["status"] for charge in charges_of(sandbox, "order-1")] == ["voided"]
    assert (await capture(provider, "order-2", "tok_ok")).status == "captured"
    assert (await capture(provider, "order 2", "tok_ok")).status == "voided"


async def test_the_breaker_opens_after_the_threshold_and_fails_fast(
    sandbox: SandboxPaymentProvider,
    providers: list[HttpPaymentProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = adapter(providers, sandbox.url, attempts=2, breaker_threshold=2)
    assert provider.breaker_state == "closed"
    with caplog.at_level(logging.INFO, logger="cleave.payments.provider"):
        for key in ("order-1", "order-2"):
            with pytest.raises(Unavailable):
                await capture(provider, key, "tok_error")
    assert provider.breaker_state == "opened"
    assert "circuit opened" in caplog.text
    before = requests_made(sandbox)
    for _ in range(5):
        with pytest.raises(Unavailable) as raised:
            await capture(provider, "order-3", "tok_ok")
        assert "circuit is open" in raised.value.detail
        with pytest.raises(Unavailable):
            await provider.void(idempotency_key="order-3")
    assert requests_made(sandbox) == before  # failing fast: nothing reached the provider


async def test_after_the_cooldown_one_trial_closes_the_breaker(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(
        providers, sandbox.url, attempts=1, breaker_threshold=1, breaker_cooldown=0.2
    )
    with pytest.raises(Unavailable):
        await capture(provider, "order-1", "tok_error")
    assert provider.breaker_state == "opened"
    before = requests_made(sandbox)
    for _ in range(1000):  # poll: fast failures until the cooldown ends, then the trial
        try:
            answer = await capture(provider, "order-2", "tok_ok")
        except Unavailable:
            await asyncio.sleep(0.01)
        else:
            break
    assert answer.status == "captured"
    assert requests_made(sandbox) == before + 1  # exactly one call: the trial
    assert provider.breaker_state == "closed"


async def test_half_open_lets_one_trial_through_and_a_failed_trial_reopens(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(
        providers, sandbox.url, timeout=5, attempts=1, breaker_threshold=1, breaker_cooldown=0.2
    )
    with pytest.raises(Unavailable):
        await capture(provider, "order-1", "tok_error")
    await asyncio.sleep(0.25)  # past the cooldown (waiting, not measuring)
    before = requests_made(sandbox)
    # Five calls at once: one trial (slow, 0.3 s) goes through, the others fail fast.
    outcomes = await asyncio.gather(
        *(capture(provider, f"trial-{n}", "tok_slow") for n in range(5)),
        return_exceptions=True,
    )
    answers = [outcome for outcome in outcomes if isinstance(outcome, ProviderCharge)]
    failures = [outcome for outcome in outcomes if isinstance(outcome, Unavailable)]
    assert len(answers) == 1 and len(failures) == 4
    assert all("trial call is under way" in failure.detail for failure in failures)
    assert requests_made(sandbox) == before + 1
    assert provider.breaker_state == "closed"

    with pytest.raises(Unavailable):
        await capture(provider, "order-2", "tok_error")
    await asyncio.sleep(0.25)
    with pytest.raises(Unavailable) as raised:
        await capture(provider, "order-3", "tok_error")  # the trial fails: open again
    assert "500 after 1 attempts" in raised.value.detail
    assert provider.breaker_state == "opened"


async def test_declines_never_open_the_breaker(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(providers, sandbox.url, breaker_threshold=1)
    for n in range(5):
        assert (await capture(provider, f"declined-{n}", "tok_declined")).status == "declined"
        assert (await capture(provider, f"invalid-{n}", "tok_nope")).status == "declined"
    assert provider.breaker_state == "closed"
    assert (await capture(provider, "order-1", "tok_ok")).status == "captured"


async def test_the_api_key_is_sent(providers: list[HttpPaymentProvider]) -> None:
    with SandboxPaymentProvider(api_key="s3cret") as sandbox:
        keyed = adapter(providers, sandbox.url, api_key="s3cret")
        assert (await capture(keyed, "order-1", "tok_ok")).status == "captured"
        keyless = adapter(providers, sandbox.url, attempts=3)
        with pytest.raises(Unavailable) as raised:
            await capture(keyless, "order-2", "tok_ok")
        assert "HTTP 401" in raised.value.detail


async def test_an_unreachable_provider_is_unavailable(
    providers: list[HttpPaymentProvider],
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    provider = adapter(providers, f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(Unavailable) as raised:
        await capture(provider, "order-1", "tok_ok")
    assert "cannot reach the provider" in raised.value.detail
    assert "(2 attempts)" in raised.value.detail


async def test_from_settings_reads_the_payment_settings(
    sandbox: SandboxPaymentProvider,
) -> None:
    settings = Settings(
        payment_timeout_seconds=1.5,
        payment_attempts=4,
        payment_breaker_threshold=7,
        payment_breaker_cooldown_seconds=9.0,
    )
    provider = HttpPaymentProvider.from_settings(sandbox.url, settings)
    try:
        assert (provider.timeout, provider.attempts) == (1.5, 4)
        assert (provider.breaker_threshold, provider.breaker_cooldown) == (7, 9.0)
        assert (await capture(provider, "order-1", "tok_ok")).status == "captured"
    finally:
        await provider.close()


def test_built_before_the_loop_closed_in_it_without_warnings(
    sandbox: SandboxPaymentProvider,
) -> None:
    # The app builds the adapter before its event loop runs in some places: the connection
    # pool must be made inside the loop, and close() must leave nothing unclosed behind.
    used = HttpPaymentProvider.from_settings(sandbox.url, Settings())
    unused = HttpPaymentProvider.from_settings(sandbox.url, Settings())

    async def run() -> ProviderCharge:
        try:
            return await capture(used, "order-1", "tok_ok")
        finally:
            await used.close()
            await unused.close()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(run()).status == "captured"
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


async def test_a_closed_adapter_is_unavailable(
    sandbox: SandboxPaymentProvider, providers: list[HttpPaymentProvider]
) -> None:
    provider = adapter(providers, sandbox.url)
    assert (await capture(provider, "order-1", "tok_ok")).status == "captured"
    await provider.close()
    await provider.close()  # idempotent
    before = requests_made(sandbox)
    with pytest.raises(Unavailable) as raised:
        await capture(provider, "order-2", "tok_ok")
    assert "adapter is closed" in raised.value.detail
    assert requests_made(sandbox) == before

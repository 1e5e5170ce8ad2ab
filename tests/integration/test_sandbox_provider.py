"""The sandbox payment provider over real HTTP: tokens, idempotency, voids, api key."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from adapters.payments.sandbox import SandboxPaymentProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=0.3) as provider:
        yield provider


@pytest.fixture
async def client(sandbox: SandboxPaymentProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        yield http


async def charge(
    client: httpx.AsyncClient, key: str, token: str, amount: int = 1250, **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/charges",
        json={"amount_cents": amount, "currency": "EUR", "token": token, "reference": key},
        headers={"Idempotency-Key": key, **headers},
    )


async def charges_of(client: httpx.AsyncClient, reference: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/charges", params={"reference": reference})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def requests_made(client: httpx.AsyncClient) -> int:
    return int((await client.get("/v1/stats")).json()["requests"])


async def eventually(count: Callable[[], Awaitable[int]], at_least: int) -> None:
    """Poll until ``count()`` reaches ``at_least`` (bounded; no timing is asserted)."""
    for _ in range(2000):
        if await count() >= at_least:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached {at_least}")


async def test_tok_ok_is_captured(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_ok")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "captured"
    assert body["id"]
    assert (body["amount_cents"], body["currency"]) == (1250, "EUR")
    assert (body["reference"], body["idempotency_key"]) == ("order-1", "order-1")
    assert [c["status"] for c in await charges_of(client, "order-1")] == ["captured"]


async def test_tok_declined_is_declined_with_a_reason(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_declined")
    assert response.status_code == 201
    assert response.json()["status"] == "declined"
    assert response.json()["reason"]


async def test_tok_error_fails_and_charges_nothing(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_error")
    assert response.status_code == 500
    assert await charges_of(client, "order-1") == []


async def test_an_unknown_token_is_declined_as_invalid(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_made_up")
    assert response.status_code == 402
    assert response.json()["status"] == "declined"
    assert response.json()["reason"] == "invalid token"


async def test_tok_slow_answers_late_then_captured(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_slow")
    assert response.status_code == 201
    assert response.json()["status"] == "captured"


async def test_a_charge_needs_an_idempotency_key(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/charges", json={"amount_cents": 1, "currency": "EUR", "token": "tok_ok"}
    )
    assert response.status_code == 400
    assert await charges_of(client, "order-1") == []


async def test_a_malformed_charge_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/charges", json={"amount_cents": "many"}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 400


async def test_the_same_key_returns_the_first_answer_and_charges_once(
    client: httpx.AsyncClient,
) -> None:
    first = await charge(client, "order-1", "tok_ok")
    again = await charge(client, "order-1", "tok_ok")
    other_token = await charge(client, "order-1", "tok_declined", amount=99)
    assert first.json() == again.json() == other_token.json()
    assert first.status_code == again.status_code == other_token.status_code == 201
    assert len(await charges_of(client, "order-1")) == 1
    assert await requests_made(client) == 3


async def test_a_declined_key_stays_declined(client: httpx.AsyncClient) -> None:
    first = await charge(client, "order-1", "tok_made_up")
    again = await charge(client, "order-1", "tok_ok")
    assert again.status_code == first.status_code == 402
    assert again.json() == first.json()


async def test_an_error_is_not_remembered(client: httpx.AsyncClient) -> None:
    assert (await charge(client, "order-1", "tok_error")).status_code == 500
    retried = await charge(client, "order-1", "tok_ok")
    assert retried.json()["status"] == "captured"


async def test_concurrent_requests_with_one_key_wait_for_the_first(
    client: httpx.AsyncClient,
) -> None:
    answers = await asyncio.gather(*(charge(client, "order-1", "tok_slow") for _ in range(5)))
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(await charges_of(client, "order-1")) == 1
    assert await requests_made(client) == 5


async def test_void_after_capture_refunds_and_stays_voided(client: httpx.AsyncClient) -> None:
    await charge(client, "order-1", "tok_ok")
    voided = await client.post("/v1/charges/order-1/void")
    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    assert [c["status"] for c in await charges_of(client, "order-1")] == ["voided"]
    again = await charge(client, "order-1", "tok_ok")
    assert again.json()["status"] == "voided"
    assert len(await charges_of(client, "order-1")) == 1


async def test_void_before_capture_blocks_the_capture(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/charges/order-1/void")).status_code == 200
    late = await charge(client, "order-1", "tok_ok")
    assert late.json()["status"] == "voided"
    assert [c["status"] for c in await charges_of(client, "order-1")] == ["voided"]


async def test_void_during_a_capture_in_flight_wins(client: httpx.AsyncClient) -> None:
    in_flight = asyncio.create_task(charge(client, "order-1", "tok_slow"))
    await eventually(lambda: requests_made(client), 1)  # the capture reached the sandbox
    assert (await client.post("/v1/charges/order-1/void")).status_code == 200
    answer = await in_flight
    assert answer.json()["status"] == "voided"
    assert [c["status"] for c in await charges_of(client, "order-1")] == ["voided"]


async def test_voiding_a_declined_charge_leaves_it_declined(client: httpx.AsyncClient) -> None:
    await charge(client, "order-1", "tok_declined")
    assert (await client.post("/v1/charges/order-1/void")).status_code == 200
    assert [c["status"] for c in await charges_of(client, "order-1")] == ["declined"]


async def test_the_listing_filters_by_reference(client: httpx.AsyncClient) -> None:
    await charge(client, "order-1", "tok_ok")
    await charge(client, "order-2", "tok_declined")
    everything = (await client.get("/v1/charges")).json()
    assert [c["reference"] for c in everything] == ["order-1", "order-2"]
    assert [c["reference"] for c in await charges_of(client, "order-2")] == ["order-2"]


async def test_an_api_key_is_required_when_set() -> None:
    with SandboxPaymentProvider(api_key="s3cret") as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            assert (await charge(client, "order-1", "tok_ok")).status_code == 401
            wrong = await charge(client, "order-1", "tok_ok", Authorization="Bearer nope")
            assert wrong.status_code == 401
            assert (await client.get("/v1/charges")).status_code == 401
            assert (await client.post("/v1/charges/order-1/void")).status_code == 401
            right = await charge(client, "order-1", "tok_ok", Authorization="Bearer s3cret")
            assert right.status_code == 201
            assert right.json()["status"] == "captured"


def test_the_url_exists_only_while_started() -> None:
    sandbox = SandboxPaymentProvider()
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    sandbox.start()
    try:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{sandbox.url}/v1/stats").json()["requests"] == 0
    finally:
        sandbox.stop()
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    sandbox.stop()  # stopping twice is harmless


def test_stop_answers_a_capture_still_waiting() -> None:
    sandbox = SandboxPaymentProvider(slow_seconds=60)
    sandbox.start()
    url = sandbox.url
    outcome: list[int | str] = []

    def capture() -> None:
        try:
            response = httpx.post(
                f"{url}/v1/charges",
                json={"amount_cents": 1, "currency": "EUR", "token": "tok_slow"},
                headers={"Idempotency-Key": "order-1"},
                timeout=30,
            )
            outcome.append(response.status_code)
        except httpx.TransportError as error:
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=capture)
    thread.start()
    while httpx.get(f"{url}/v1/stats").json()["requests"] < 1:
        time.sleep(0.005)
    sandbox.stop()
    thread.join()
    assert outcome == [503]

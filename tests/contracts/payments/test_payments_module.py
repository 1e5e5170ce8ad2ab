"""The payments module through the bus, against the sandbox provider over real HTTP.

Each outcome is checked three ways: the charges the module recorded, the events a
subscriber received (through payments' outbox and the relay), and the provider's own list.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request
from litestar.di import Provide

from adapters.http.auth import JwtTokenIssuer, jwt_auth, provide_principal, role_guard
from adapters.http.problems import EXCEPTION_HANDLERS
from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from kernel import SYSTEM, Forbidden, Principal, Unavailable
from kernel.runtime import Runtime
from modules.payments.api import PaymentsController
from modules.payments.contracts import (
    NOT_ALLOWED,
    CapturePayment,
    Charge,
    GetCharges,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
    VoidPayment,
)
from modules.payments.module import module as payments
from tests.contracts.payments.observer.module import Seen, observer
from tests.support.harness import running_shop, served

pytestmark = pytest.mark.anyio

ADMIN = Principal(subject="admin-1", roles=("admin",))
CUSTOMER = Principal(subject="customer-1", roles=("customer",))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxPaymentProvider]:
    """One sandbox for the file (each test uses its own order ids)."""
    with SandboxPaymentProvider(slow_seconds=0.4) as provider:
        yield provider


def http_provider(url: str, timeout: float = 2.0) -> HttpPaymentProvider:
    return HttpPaymentProvider(
        url,
        timeout=timeout,
        attempts=2,
        breaker_threshold=1000,
        breaker_cooldown=0.5,
        backoff_initial=0.01,
        backoff_max=0.02,
    )


@pytest.fixture
async def provider(sandbox: SandboxPaymentProvider) -> AsyncIterator[HttpPaymentProvider]:
    adapter = http_provider(sandbox.url)
    yield adapter
    await adapter.close()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def shop(
    sqlite_url: str, transport: str, provider: HttpPaymentProvider, seen: Seen
) -> AsyncIterator[Runtime]:
    async with running_shop(
        sqlite_url,
        transport=transport,  # type: ignore[arg-type]
        modules=[payments, observer(seen)],
        payment_provider=provider,
    ) as runtime:
        yield runtime


def new_order() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


async def capture(shop: Runtime, order_id: str, token: str, amount: int = 1999) -> None:
    command = CapturePayment(
        order_id=order_id, amount_cents=amount, currency="EUR", payment_token=token
    )
    await shop.bus.send(command, principal=SYSTEM)
    assert await shop.settle()


async def void(shop: Runtime, order_id: str) -> None:
    await shop.bus.send(VoidPayment(order_id=order_id), principal=SYSTEM)
    assert await shop.settle()


async def charges(shop: Runtime, order_id: str) -> list[Charge]:
    return await shop.bus.ask(GetCharges(order_id=order_id), principal=SYSTEM)


def provider_charges(sandbox: SandboxPaymentProvider, order_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox.url}/v1/charges", params={"reference": order_id})
    result: list[dict[str, Any]] = response.json()
    return result


async def test_a_capture_is_recorded_and_announced(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    await capture(shop, order, "tok_ok", amount=2500)
    [charge] = await charges(shop, order)
    assert (charge.status, charge.amount_cents, charge.currency) == ("CAPTURED", 2500, "EUR")
    [at_provider] = provider_charges(sandbox, order)
    assert charge.provider_charge_id == at_provider["id"]
    assert seen.of(order) == [
        PaymentCaptured(order_id=order, charge_id=charge.id, amount_cents=2500, currency="EUR")
    ]


async def test_a_repeated_capture_answers_again_and_charges_once(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    for _ in range(3):
        await capture(shop, order, "tok_ok")
    assert len(await charges(shop, order)) == 1
    assert len(provider_charges(sandbox, order)) == 1
    outcomes = seen.of(order)
    assert len(outcomes) == 3 and len(set(outcomes)) == 1


async def test_concurrent_captures_of_one_order_charge_once(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    commands = [
        CapturePayment(order_id=order, amount_cents=5, currency="EUR", payment_token="tok_ok")
        for _ in range(4)
    ]
    await asyncio.gather(*(shop.bus.send(command, principal=SYSTEM) for command in commands))
    assert await shop.settle()
    assert [charge.status for charge in await charges(shop, order)] == ["CAPTURED"]
    assert len(provider_charges(sandbox, order)) == 1
    assert len(set(seen.of(order))) == 1 and len(seen.of(order)) == 4


async def test_a_decline_is_recorded_and_announced(shop: Runtime, seen: Seen) -> None:
    order = new_order()
    other = new_order()
    await capture(shop, order, "tok_declined")
    await capture(shop, other, "tok_made_up")
    assert [charge.status for charge in await charges(shop, order)] == ["DECLINED"]
    assert seen.of(order) == [PaymentDeclined(order_id=order, reason="card declined")]
    assert seen.of(other) == [PaymentDeclined(order_id=other, reason="invalid token")]


async def test_a_provider_failure_is_recorded_and_a_later_capture_may_succeed(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    await capture(shop, order, "tok_error")
    [failed] = await charges(shop, order)
    assert failed.status == "FAILED"
    assert failed.reason is not None and "500 after 2 attempts" in failed.reason
    assert seen.of(order) == [PaymentFailed(order_id=order, reason=failed.reason)]

    await capture(shop, order, "tok_ok")
    assert [charge.status for charge in await charges(shop, order)] == ["FAILED", "CAPTURED"]
    assert isinstance(seen.of(order)[-1], PaymentCaptured)
    assert len(provider_charges(sandbox, order)) == 1


async def test_a_timeout_is_a_failure_and_the_late_capture_is_voided(
    sqlite_url: str, transport: str, sandbox: SandboxPaymentProvider
) -> None:
    impatient = http_provider(sandbox.url, timeout=0.1)  # tok_slow takes 0.4 s here
    seen = Seen()
    order = new_order()
    try:
        async with running_shop(
            sqlite_url,
            transport=transport,  # type: ignore[arg-type]
            modules=[payments, observer(seen)],
            payment_provider=impatient,
        ) as shop:
            await capture(shop, order, "tok_slow")
            [failed] = await charges(shop, order)
            assert failed.status == "FAILED"
            assert "did not answer within 0.1s (2 attempts)" in (failed.reason or "")
            assert seen.of(order) == [PaymentFailed(order_id=order, reason=failed.reason)]
            # The saga compensates a failure with a void, which also stops the capture
            # still in flight at the provider.
            await void(shop, order)
            statuses = [charge.status for charge in await charges(shop, order)]
            assert statuses == ["FAILED", "VOIDED"]
            assert seen.voids(order) == [PaymentVoided(order_id=order)]
    finally:
        await impatient.close()
    for _ in range(1000):  # poll until the capture in flight ends (no timing asserted)
        if provider_charges(sandbox, order):
            break
        await asyncio.sleep(0.01)
    assert [c["status"] for c in provider_charges(sandbox, order)] == ["voided"]


async def test_void_after_capture_refunds_and_later_captures_fail(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    await capture(shop, order, "tok_ok")
    await void(shop, order)
    await void(shop, order)  # a repeated void changes nothing more
    [charge] = await charges(shop, order)
    assert (charge.status, charge.amount_cents) == ("VOIDED", 1999)
    assert [c["status"] for c in provider_charges(sandbox, order)] == ["voided"]
    assert seen.voids(order) == [PaymentVoided(order_id=order)] * 2

    await capture(shop, order, "tok_ok")
    assert len(await charges(shop, order)) == 1
    assert seen.outcomes(order)[-1] == PaymentFailed(order_id=order, reason="voided")


async def test_void_before_capture_is_remembered(
    shop: Runtime, seen: Seen, sandbox: SandboxPaymentProvider
) -> None:
    order = new_order()
    await void(shop, order)
    [charge] = await charges(shop, order)
    assert (charge.status, charge.amount_cents, charge.currency) == ("VOIDED", 0, "XXX")
    await capture(shop, order, "tok_ok")
    assert seen.outcomes(order) == [PaymentFailed(order_id=order, reason="voided")]
    assert provider_charges(sandbox, order) == []  # the module never asked


async def test_voiding_a_declined_order_keeps_the_decline(shop: Runtime, seen: Seen) -> None:
    order = new_order()
    await capture(shop, order, "tok_declined")
    await void(shop, order)
    assert [charge.status for charge in await charges(shop, order)] == ["DECLINED"]
    assert seen.voids(order) == [PaymentVoided(order_id=order)]


async def test_a_deferred_capture_goes_through_the_relay(shop: Runtime, seen: Seen) -> None:
    order = new_order()
    command = CapturePayment(
        order_id=order, amount_cents=10, currency="EUR", payment_token="tok_ok"
    )
    await shop.bus.defer(command)
    assert await shop.settle()
    assert [charge.status for charge in await charges(shop, order)] == ["CAPTURED"]
    assert len(seen.of(order)) == 1


async def test_only_admins_and_the_system_read_charges(shop: Runtime) -> None:
    order = new_order()
    await capture(shop, order, "tok_ok")
    assert len(await shop.bus.ask(GetCharges(order_id=order), principal=ADMIN)) == 1
    for principal in (CUSTOMER, None):
        with pytest.raises(Forbidden) as raised:
            await shop.bus.ask(GetCharges(order_id=order), principal=principal)
        assert raised.value.code == NOT_ALLOWED


async def test_a_void_the_provider_cannot_take_is_unavailable(
    sqlite_url: str, transport: str, tmp_path: Path
) -> None:
    order = new_order()
    other = new_order()
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = http_provider(f"http://127.0.0.1:{port}")
    try:
        async with running_shop(
            sqlite_url,
            transport=transport,  # type: ignore[arg-type]
            modules=[payments],
            payment_provider=unreachable,
        ) as shop:
            with pytest.raises(Unavailable):
                await shop.bus.send(VoidPayment(order_id=order), principal=SYSTEM)
            assert await charges(shop, order) == []  # retried later by the relay
            await capture(shop, other, "tok_ok")
            [failed] = await charges(shop, other)
            assert failed.status == "FAILED"
            assert "cannot reach" in (failed.reason or "")
    finally:
        await unreachable.close()


def principal_of(request: Request[Any, Any, Any]) -> Principal | None:
    return provide_principal(request)


async def test_the_rest_route_lists_charges_for_admins(shop: Runtime) -> None:
    order = new_order()
    await capture(shop, order, "tok_ok")
    secret = "payments-test-secret-0123456789-abcdefgh"
    issuer = JwtTokenIssuer(secret, 60)
    app = Litestar(
        route_handlers=[PaymentsController],
        dependencies={
            "bus": Provide(lambda: shop.bus, sync_to_thread=False),
            "principal": Provide(principal_of, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        on_app_init=[jwt_auth(secret, 60).on_app_init],
        guards=[role_guard],
    )
    admin_token, _ = issuer.issue("admin-1", ("admin",))
    customer_token, _ = issuer.issue("customer-1", ("customer",))
    # Served on this loop: the bus may call the payments module over HTTP from the route.
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get(
            f"/api/v1/payments/{order}", headers={"Authorization": f"Bearer {admin_token}"}
        )
        assert response.status_code == 200
        [body] = response.json()
        assert (body["order_id"], body["status"]) == (order, "CAPTURED")
        refused = await client.get(
            f"/api/v1/payments/{order}", headers={"Authorization": f"Bearer {customer_token}"}
        )
        assert refused.status_code == 403
        assert (await client.get(f"/api/v1/payments/{order}")).status_code == 401

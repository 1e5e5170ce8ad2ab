"""Payments under random captures and voids, checked against the provider's own records.

A hypothesis state machine drives the payments module through the bus (over each
transport), against the sandbox provider over real HTTP, with random tokens for a few orders
(so the same order is captured again, concurrently, and voided). After every step:

* an order has at most one settled charge, and the provider at most one charge per order,
  never more than one captured-and-not-voided: repeating ``CapturePayment`` never charges twice;
* the module's charges agree with the provider's list;
* every capture was answered by exactly one outcome event, and every void by one
  ``PaymentVoided``.

At the end every order is voided, as the saga would compensate it, and nothing stays captured.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from kernel import SYSTEM
from modules.payments.contracts import (
    CapturePayment,
    Charge,
    GetCharges,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    VoidPayment,
)
from modules.payments.module import module as payments
from modules.payments.ports import ProviderCharge
from tests.contracts.payments.observer.module import Seen, observer
from tests.support.harness import SyncDriver
from tests.support.machines import ShopMachine

ORDERS = st.integers(min_value=0, max_value=3)
TOKENS = st.sampled_from(["tok_ok", "tok_declined", "tok_error", "tok_slow", "tok_bogus"])
#: What a first capture of an order settles as, by token (tok_slow may outlast its timeout).
FIRST_OUTCOME = {
    "tok_ok": {"CAPTURED"},
    "tok_declined": {"DECLINED"},
    "tok_bogus": {"DECLINED"},
    "tok_error": {"FAILED"},
    "tok_slow": {"FAILED", "CAPTURED"},
}
PROVIDER_STATUS = {"CAPTURED": "captured", "DECLINED": "declined"}


class ByToken:
    """The payment provider port over two real HTTP adapters to one sandbox, chosen by token.

    ``tok_slow`` goes through ``slow``, whose timeout is shorter than the sandbox's delay, so
    its capture may fail and land late; every other token goes through ``prompt``, whose
    timeout no busy machine reaches, so that what it settles as is what its token says.
    """

    def __init__(self, slow: HttpPaymentProvider, prompt: HttpPaymentProvider) -> None:
        self.slow = slow
        self.prompt = prompt

    async def capture(
        self, *, idempotency_key: str, amount_cents: int, currency: str, token: str
    ) -> ProviderCharge:
        adapter = self.slow if token == "tok_slow" else self.prompt
        return await adapter.capture(
            idempotency_key=idempotency_key,
            amount_cents=amount_cents,
            currency=currency,
            token=token,
        )

    async def void(self, *, idempotency_key: str) -> None:
        await self.prompt.void(idempotency_key=idempotency_key)

    async def close(self) -> None:
        await self.slow.close()
        await self.prompt.close()


def settled(charges: list[Charge]) -> Charge | None:
    found = [charge for charge in charges if charge.status != "FAILED"]
    assert len(found) <= 1, f"more than one settled charge: {found}"
    return found[0] if found else None


def outcome_of(charges: list[Charge]) -> Any:
    """The event the latest capture of an order with these charges published."""
    charge = settled(charges)
    if charge is None:
        return PaymentFailed(order_id=charges[-1].order_id, reason=charges[-1].reason or "failed")
    if charge.status == "CAPTURED":
        return PaymentCaptured(
            order_id=charge.order_id,
            charge_id=charge.id,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
        )
    if charge.status == "DECLINED":
        return PaymentDeclined(order_id=charge.order_id, reason=charge.reason or "declined")
    return PaymentFailed(order_id=charge.order_id, reason="voided")


class PaymentsMachine(ShopMachine):
    sandbox_url: ClassVar[str]

    def __init__(self) -> None:
        self.seen = Seen()
        self.modules = [payments, observer(self.seen)]
        super().__init__()
        self.prefix = uuid.uuid4().hex[:10]  # the sandbox outlives examples
        self.http = httpx.Client(base_url=self.sandbox_url, timeout=10)
        self.captures: dict[str, int] = {}
        self.voids: dict[str, int] = {}

    def order(self, number: int) -> str:
        return f"{self.prefix}-{number}"

    def amount(self, order_id: str) -> int:
        return 100 + int(order_id.rsplit("-", 1)[1])

    def charges(self, order_id: str) -> list[Charge]:
        result: list[Charge] = self.run(
            self.bus.ask(GetCharges(order_id=order_id), principal=SYSTEM)
        )
        return result

    def at_provider(self, order_id: str) -> list[dict[str, Any]]:
        return self.provider_charges().get(order_id, [])

    def provider_charges(self) -> dict[str, list[dict[str, Any]]]:
        """The provider's charges of this example's orders, by order."""
        response = self.http.get("/v1/charges")
        found: dict[str, list[dict[str, Any]]] = {}
        for charge in response.json():
            if charge["reference"].startswith(self.prefix):
                found.setdefault(charge["reference"], []).append(charge)
        return found

    def all_charges(self) -> dict[str, list[Charge]]:
        """The module's charges of every order of this example, by order."""
        orders = [self.order(number) for number in range(4)]
        asks = [self.bus.ask(GetCharges(order_id=order), principal=SYSTEM) for order in orders]
        return dict(zip(orders, self.run(asyncio.gather(*asks)), strict=True))

    def _capture_command(self, order_id: str, token: str) -> CapturePayment:
        return CapturePayment(
            order_id=order_id,
            amount_cents=self.amount(order_id),
            currency="EUR",
            payment_token=token,
        )

    def _captured(self, order_id: str, times: int, token: str) -> None:
        fresh = order_id not in self.captures and order_id not in self.voids
        self.captures[order_id] = self.captures.get(order_id, 0) + times
        self.settle()
        charges = self.charges(order_id)
        if fresh:
            assert charges[-1].status in FIRST_OUTCOME[token], (token, charges)
        # Each capture was answered by what the charges say: the settled charge, or a
        # failed attempt (two concurrent captures may see a slow capture end differently).
        failures = {
            PaymentFailed(order_id=order_id, reason=charge.reason or "failed")
            for charge in charges
            if charge.status == "FAILED"
        }
        expected = failures | {outcome_of(charges)}
        assert all(outcome in expected for outcome in self.seen.outcomes(order_id)[-times:])

    @rule(number=ORDERS, token=TOKENS)
    def capture(self, number: int, token: str) -> None:
        order_id = self.order(number)
        self.run(self.bus.send(self._capture_command(order_id, token), principal=SYSTEM))
        self._captured(order_id, 1, token)

    @rule(number=ORDERS, token=TOKENS)
    def capture_twice_at_once(self, number: int, token: str) -> None:
        order_id = self.order(number)
        command = self._capture_command(order_id, token)
        sends = [self.bus.send(command, principal=SYSTEM) for _ in range(2)]
        self.run(asyncio.gather(*sends))
        self._captured(order_id, 2, token)

    @rule(number=ORDERS, token=TOKENS)
    def capture_through_the_relay(self, number: int, token: str) -> None:
        order_id = self.order(number)
        self.run(self.bus.defer(self._capture_command(order_id, token)))
        self._captured(order_id, 1, token)

    @rule(number=ORDERS)
    def void(self, number: int) -> None:
        order_id = self.order(number)
        self.run(self.bus.send(VoidPayment(order_id=order_id), principal=SYSTEM))
        self.voids[order_id] = self.voids.get(order_id, 0) + 1
        self.settle()
        charge = settled(self.charges(order_id))
        assert charge is not None and charge.status in ("VOIDED", "DECLINED")
        assert not [c for c in self.at_provider(order_id) if c["status"] == "captured"]

    @invariant()
    def the_module_and_the_provider_agree(self) -> None:
        providers = self.provider_charges()
        for order_id, charges in self.all_charges().items():
            at_provider = providers.get(order_id, [])
            # One charge per order at the provider: the order id is the idempotency key.
            assert len(at_provider) <= 1, at_provider
            provider = at_provider[0] if at_provider else None
            charge = settled(charges)
            if charge is None:
                # Nothing asked, or only failed attempts: a capture that outlasted its
                # timeout may have been captured late (the saga voids it).
                assert provider is None or (charges and provider["status"] == "captured")
            elif charge.status == "VOIDED":
                assert provider is None or provider["status"] == "voided"
            else:
                assert provider is not None
                assert provider["status"] == PROVIDER_STATUS[charge.status]
                assert provider["id"] == charge.provider_charge_id
                assert provider["amount_cents"] == charge.amount_cents

    @invariant()
    def every_command_was_answered_once(self) -> None:
        for number in range(4):
            order_id = self.order(number)
            assert len(self.seen.outcomes(order_id)) == self.captures.get(order_id, 0)
            assert len(self.seen.voids(order_id)) == self.voids.get(order_id, 0)

    def teardown(self) -> None:
        try:
            for order_id in set(self.captures) | set(self.voids):
                self.void(int(order_id.rsplit("-", 1)[1]))  # compensate, like the saga
        finally:
            self.http.close()
            super().teardown()


def adapter(url: str, *, timeout: float) -> HttpPaymentProvider:
    return HttpPaymentProvider(
        url,
        timeout=timeout,
        attempts=2,
        breaker_threshold=1000,
        breaker_cooldown=0.5,
        backoff_initial=0.01,
        backoff_max=0.02,
    )


def test_payments_charge_each_order_at_most_once(driver: SyncDriver, transport: str) -> None:
    sandbox = SandboxPaymentProvider(slow_seconds=0.4)
    sandbox.start()
    provider = ByToken(
        slow=adapter(sandbox.url, timeout=0.1),
        prompt=adapter(sandbox.url, timeout=10.0),
    )
    machine = type(
        "PaymentsMachine",
        (PaymentsMachine,),
        {
            "driver": driver,
            "transport": transport,
            "sandbox_url": sandbox.url,
            "ports": {"payment_provider": provider},
        },
    )
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=8,
                stateful_step_count=10,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        driver.run(provider.close())
        sandbox.stop()

"""The outside payment provider, as the payments module needs it.

The adapter behind this port owns the per-call timeout, the bounded retries with backoff and
jitter, and the circuit breaker; the module sees only outcomes and ``Unavailable``.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec


class ProviderCharge(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's answer to a capture."""

    provider_charge_id: str | None
    status: Literal["captured", "declined", "voided"]
    reason: str | None = None


class PaymentProvider(Protocol):
    async def capture(
        self, *, idempotency_key: str, amount_cents: int, currency: str, token: str
    ) -> ProviderCharge:
        """Capture once per ``idempotency_key`` (a repeat returns the first answer).

        Raises ``kernel.Unavailable`` when the provider cannot answer in time (after the
        adapter's retries) or its circuit breaker is open.
        """
        ...

    async def void(self, *, idempotency_key: str) -> None:
        """Cancel the capture with ``idempotency_key``, now or when it completes.
        Raises ``kernel.Unavailable`` like ``capture``."""
        ...

"""The one stand-in of the shop's tests: the sandbox payment provider, a real HTTP server,
reached through the real HTTP adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from entrypoints.settings import Settings


@dataclass
class Payments:
    """A started sandbox and the adapter pointing at it."""

    sandbox: SandboxPaymentProvider
    provider: HttpPaymentProvider

    def charges(self, order_id: str | None = None) -> list[dict[str, Any]]:
        """The provider's own record of charges (of one order, or all)."""
        params = {} if order_id is None else {"reference": order_id}
        response = httpx.get(f"{self.sandbox.url}/v1/charges", params=params, timeout=10)
        response.raise_for_status()
        charges: list[dict[str, Any]] = response.json()
        return charges

    async def capture_requested(self, within: float = 10.0) -> None:
        """Return once the sandbox has received a capture request (any, counted by
        ``/v1/stats``); ``AssertionError`` if none came ``within`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            stats = await asyncio.to_thread(self._stats)
            if stats["requests"] > 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no capture request reached the sandbox within {within}s")

    def _stats(self) -> dict[str, int]:
        response = httpx.get(f"{self.sandbox.url}/v1/stats", timeout=10)
        response.raise_for_status()
        stats: dict[str, int] = response.json()
        return stats


@contextmanager
def sandbox_payments(settings: Settings, slow_seconds: float = 1.0) -> Iterator[Payments]:
    """A sandbox on a free port and an ``HttpPaymentProvider`` built from ``settings``.

    The caller closes ``provider`` on its own event loop (``await provider.close()``).
    """
    sandbox = SandboxPaymentProvider(slow_seconds=slow_seconds)
    sandbox.start()
    try:
        yield Payments(sandbox, HttpPaymentProvider.from_settings(sandbox.url, settings))
    finally:
        sandbox.stop()

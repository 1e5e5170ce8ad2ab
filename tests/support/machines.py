"""Plumbing for hypothesis state machines that drive a running shop through its bus."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from entrypoints.settings import Settings
from kernel.module import Module
from kernel.runtime import Runtime
from tests.support.harness import TEST_SETTINGS, SyncDriver, running_shop


class ShopMachine(RuleBasedStateMachine):
    """A state machine with a fresh shop (own SQLite file) per example, on the test's loop."""

    driver: SyncDriver
    transport: str
    modules: Sequence[Module] | None = None
    settings: Settings = TEST_SETTINGS
    ports: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self._directory = Path(tempfile.mkdtemp(prefix="cleave-machine-"))
        self._stack = contextlib.AsyncExitStack()
        url = f"sqlite+aiosqlite:///{self._directory / 'shop.db'}"
        self.runtime: Runtime = self.run(
            self._stack.enter_async_context(
                running_shop(
                    url,
                    transport=self.transport,  # type: ignore[arg-type]
                    settings=self.settings,
                    modules=self.modules,
                    **self.ports,
                )
            )
        )
        self.bus = self.runtime.bus

    def run(self, awaitable: Any) -> Any:
        return self.driver.run(awaitable)

    def settle(self) -> None:
        assert self.run(self.runtime.settle(30)), "the outboxes did not drain in 30 s"

    def teardown(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)


def machine_for(base: type[ShopMachine], driver: SyncDriver, transport: str) -> type[ShopMachine]:
    """``base`` bound to one driver (event loop) and one transport."""
    return type(base.__name__, (base,), {"driver": driver, "transport": transport})

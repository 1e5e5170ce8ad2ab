"""Runs one handler in one unit of work: where the inbox, the deadline and the rerun of lost
concurrency races live, whichever transport brought the message."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kernel.binding import BoundHandler, bind
from kernel.clock import Clock, SystemClock
from kernel.errors import (
    ConcurrencyConflict,
    ConfigurationError,
    DomainError,
    DuplicateDelivery,
    PoisonMessage,
    Unavailable,
)
from kernel.messages import Envelope, Message
from kernel.observe import Arrival, Observer, Outcome, Tracer
from kernel.registry import Endpoint, Registry
from kernel.unit_of_work import Storage

log = logging.getLogger("cleave.dispatch")


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """An endpoint of a module hosted in this process, with its handler bound."""

    endpoint: Endpoint
    call: BoundHandler
    storage: Storage


class Dispatcher:
    """Runs handlers of the modules hosted in this process."""

    #: How many times a unit of work that lost a concurrency race is run again at once.
    conflict_attempts = 5

    def __init__(
        self,
        registry: Registry,
        storages: Mapping[str, Storage],
        resolve: Callable[[Any], Any],
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry
        self._now = (clock or SystemClock()).now
        self.local: dict[str, LocalEndpoint] = {}
        for name, endpoint in registry.endpoints.items():
            storage = storages.get(endpoint.module)
            if storage is None:
                raise ConfigurationError(f"module {endpoint.module!r} has no storage")
            self.local[name] = LocalEndpoint(
                endpoint=endpoint,
                call=bind(endpoint.handler, resolve, f"handler {name}"),
                storage=storage,
            )
        self._receivers: dict[tuple[str, type[Message]], tuple[LocalEndpoint, ...]] = {}
        #: Deliveries by (handler, "handled" or "repeat": the inbox already held it).
        self.deliveries: Counter[tuple[str, str]] = Counter()
        #: Told about every handled message (logs, metrics); set by the composition root.
        self.observer: Observer | None = None
        #: Opens a span around every handler (traces); set by the composition root.
        self.tracer: Tracer | None = None

    def handler_of(self, message: type[Message]) -> LocalEndpoint:
        """The local handler of a command or query."""
        endpoint = self.registry.handlers.get(message)
        if endpoint is None:
            raise ConfigurationError(f"no module hosted here handles {message.__qualname__}")
        return self.local[endpoint.name]

    async def request(
        self, message: Message, envelope: Envelope, arrival: Arrival = "inprocess"
    ) -> Any:
        """Run the handler of a command or query and return its result."""
        endpoint = self.registry.handlers.get(type(message))
        if endpoint is None:
            raise PoisonMessage(f"no module hosted here handles {envelope.name}")
        return await self.handle(
            self.local[endpoint.name], message, envelope, deduplicate=False, arrival=arrival
        )

    async def deliver(
        self, module: str, message: Message, envelope: Envelope, arrival: Arrival = "inprocess"
    ) -> None:
        """Run every handler of hosted ``module`` for an event or deferred command, each in
        its own unit of work and at most once in effect (the inbox drops repeats).

        If one fails, the error goes back to the sender, who delivers again later: the
        handlers that had succeeded find the message in their inbox and do nothing.
        """
        key = (module, type(message))
        receivers = self._receivers.get(key)
        if receivers is None:
            found = self.registry.receivers(module, type(message))
            if not found:
                raise PoisonMessage(f"module {module!r} does not handle {envelope.name} here")
            receivers = self._receivers[key] = tuple(self.local[e.name] for e in found)
        for local in receivers:
            await self.handle(local, message, envelope, deduplicate=True, arrival=arrival)

    async def handle(
        self,
        local: LocalEndpoint,
        message: Message,
        envelope: Envelope,
        deduplicate: bool = False,
        arrival: Arrival = "inprocess",
    ) -> Any:
        """Run ``local``'s handler on ``message`` in a fresh unit of work and commit it.

        With ``deduplicate`` (asynchronous deliveries, which may come again), the inbox makes a
        redelivered message a no-op: it returns ``None`` without running the handler again.
        """
        if envelope.deadline is not None and self._now() > envelope.deadline:
            raise Unavailable(f"{envelope.name}: the caller's deadline has passed", code="deadline")
        # Timing costs two clock reads: only when someone observes.
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        outcome: Outcome = "handled"
        tracer = self.tracer
        began = tracer.begin(local.endpoint, envelope) if tracer is not None else None
        attempt = 1
        reads_only = local.endpoint.kind == "query"
        try:
            while True:
                # After a lost race the storage reruns it so that it cannot lose again.
                unit = local.storage.unit_of_work(envelope, attempt > 1, reads_only)
                token = unit.enter()
                try:
                    if deduplicate and await unit.handled(local.endpoint.name):
                        raise DuplicateDelivery(envelope.message_id)
                    result = await local.call(message, envelope)
                    if deduplicate:
                        unit.mark_handled(local.endpoint.name)
                    await unit.commit()
                    if deduplicate:
                        self.deliveries[(local.endpoint.name, "handled")] += 1
                    if unit.committed is not None:
                        _run_committed(unit.committed, envelope)
                    return result
                except DuplicateDelivery:
                    await unit.rollback()
                    self.deliveries[(local.endpoint.name, "repeat")] += 1
                    outcome = "repeat"
                    return None
                except BaseException as error:
                    await unit.rollback()
                    if not unit.transient(error):
                        raise
                    if attempt >= self.conflict_attempts:
                        if isinstance(error, ConcurrencyConflict):
                            raise
                        raise ConcurrencyConflict(f"{envelope.name}: {error}") from error
                    attempt += 1
                    await asyncio.sleep(random.uniform(0, 0.001 * attempt))
                finally:
                    unit.leave(token)
        except DomainError:
            outcome = "refused"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            if tracer is not None:
                tracer.end(began, outcome)
            if observer is not None:
                observer.handled(
                    local.endpoint, envelope, time.perf_counter() - started, outcome, arrival
                )


def _run_committed(callbacks: list[Callable[[], None]], envelope: Envelope) -> None:
    # The unit has committed: a failing callback must not turn that success into an error
    # the sender would act on (a command retried, a delivery sent again).
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("an after-commit callback of %s failed", envelope.name)

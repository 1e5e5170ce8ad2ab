"""``/metrics``: what this process has done, in Prometheus' text format.

The kernel counts (it knows no metrics library); this adapter reads its counters when
Prometheus scrapes, so counting costs the hot path a dictionary increment and nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from adapters.http.sql_metrics import StatementCollector
from adapters.observability.messages import OBSERVER
from adapters.observability.state import circuit_families, storage_families
from adapters.sqlalchemy.statement_counts import counting_enabled
from kernel.runtime import Runtime


class RuntimeCollector:
    """Reads the counters of the running ``Runtime`` of this process."""

    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        deliveries = CounterMetricFamily(
            "cleave_deliveries",
            "Events and deferred commands delivered to a handler of this process, by outcome "
            "(handled, or repeat: the inbox already held it and it had no second effect)",
            labels=["handler", "outcome"],
        )
        in_flight = GaugeMetricFamily(
            "cleave_relay_in_flight",
            "Deliveries a relay of this process has under way",
            labels=["relay"],
        )
        if runtime is not None and runtime.receiver is not None:
            for (handler, outcome), count in runtime.receiver.dispatcher.deliveries.items():
                deliveries.add_metric([handler, outcome], count)
            for relay in runtime.relays:
                in_flight.add_metric([relay.name], relay.in_flight)
        yield deliveries
        yield in_flight
        yield from OBSERVER.collect()


class _Families:
    """Metric families read beforehand, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def scrape(registry: CollectorRegistry, runtime: Runtime | None) -> bytes:
    """The whole ``/metrics`` page: ``registry``, then the gauges read from the databases and
    the circuit breakers now, then prometheus-client's global registry (the HTTP metrics of
    litestar's Prometheus middleware, and the process's CPU and memory)."""
    now = [*await storage_families(runtime), *circuit_families()]
    measured = generate_latest(_Families(now))
    return generate_latest(registry) + measured + generate_latest(REGISTRY)


def process_metrics(runtime: Callable[[], Runtime | None]) -> Callable[[], Awaitable[bytes]]:
    """``/metrics`` of a process without an HTTP app (a worker): the same page."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime))
    if counting_enabled():
        registry.register(StatementCollector())

    async def page() -> bytes:
        return await scrape(registry, runtime())

    return page


def metrics_route(runtime: Callable[[State], Runtime | None]) -> Any:
    """The ``GET /metrics`` handler of an app whose state holds the runtime."""

    @get("/metrics", exclude_from_auth=True, include_in_schema=False)
    async def metrics(state: State) -> Response[bytes]:
        registry = state.get("metrics_registry")
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(RuntimeCollector(lambda: runtime(state)))
            if counting_enabled():
                registry.register(StatementCollector())
            state.metrics_registry = registry
        page = await scrape(registry, runtime(state))
        return Response(page, media_type="text/plain; version=0.0.4")

    return metrics

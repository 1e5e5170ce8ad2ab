"""``/metrics``: what this process has done, in Prometheus' text format.

The kernel counts (it knows no metrics library); this adapter reads its counters when
Prometheus scrapes, so counting costs the hot path a dictionary increment and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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


def metrics_route(runtime: Callable[[State], Runtime | None]) -> Any:
    """The ``GET /metrics`` handler of an app whose state holds the runtime."""

    @get("/metrics", exclude_from_auth=True, include_in_schema=False, sync_to_thread=False)
    def metrics(state: State) -> Response[bytes]:
        registry = state.get("metrics_registry")
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(RuntimeCollector(lambda: runtime(state)))
            state.metrics_registry = registry
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return metrics

"""``RequestMetrics`` counts what litestar's Prometheus middleware counts: the same requests
by the same labels (method, route template, status, app), the same errors, the same
latency observations, and nothing left in progress; a configuration it does not cover is
litestar's own."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import pytest
from litestar import Litestar, get, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, PathParameter
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from adapters.http.request_metrics import RequestMetrics

pytestmark = pytest.mark.anyio


@get("/items/{number:int}")
async def item(number: Annotated[int, PathParameter()]) -> dict[str, int]:
    if number == 404:
        raise NotFoundException("no such item")
    return {"number": number}


@post("/items")
async def add_item(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


@get("/boom")
async def boom() -> None:
    raise RuntimeError("a bug")


def app(prefix: str, middleware: type[PrometheusMiddleware], **config: Any) -> Litestar:
    metrics = PrometheusConfig(
        app_name="shop",
        prefix=prefix,
        group_path=True,
        middleware_class=middleware,
        **config,
    )
    return Litestar([item, add_item, boom], middleware=[metrics.middleware], debug=False)


async def traffic(application: Litestar) -> None:
    async with AsyncTestClient(app=application) as client:
        for number in (1, 2, 404, 3):
            await client.get(f"/items/{number}")
        for _ in range(3):
            await client.post("/items", json={"sku": "TEA"})
        await client.post("/items", content=b"not json")
        await client.get("/boom")
        await client.get("/boom")


def samples(prefix: str) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """(counts by name and labels, and the latency histograms' bucket labels) under
    ``prefix``, with the prefix taken off the names."""
    counts: Counter[tuple[Any, ...]] = Counter()
    buckets: Counter[tuple[Any, ...]] = Counter()
    for family in REGISTRY.collect():
        for sample in family.samples:
            if not sample.name.startswith(prefix + "_"):
                continue
            name = sample.name.removeprefix(prefix)
            labels = tuple(sorted(sample.labels.items()))
            if name.endswith("_created"):
                continue
            if name.endswith("_bucket"):
                buckets[(name, labels)] += 0  # which label sets exist, not where they fell
            elif name.endswith("_sum"):
                assert sample.value >= 0
            else:
                counts[(name, labels)] += int(sample.value)
    return counts, buckets


async def test_the_same_metrics_as_litestars_middleware() -> None:
    await traffic(app("litestar_way", PrometheusMiddleware))
    await traffic(app("lean_way", RequestMetrics))
    theirs, our = samples("litestar_way"), samples("lean_way")
    assert our == theirs
    counts = our[0]
    assert counts[("_requests_total", _labels("POST", "/items", "201"))] == 3
    assert counts[("_requests_total", _labels("GET", "/items/{number}", "404"))] == 1
    assert counts[("_requests_error_total", _labels("GET", "/boom", "500"))] == 2
    assert counts[("_request_duration_seconds_count", _labels("GET", "/boom", "500"))] == 2
    in_progress = [value for (name, _), value in counts.items() if "in_progress" in name]
    assert in_progress and not any(in_progress)


async def test_a_configuration_it_does_not_cover_is_litestars() -> None:
    labeled = app("labeled_way", RequestMetrics, labels={"region": "eu"})
    await traffic(labeled)
    counts, _ = samples("labeled_way")
    region = tuple(sorted((*_labels("POST", "/items", "201"), ("region", "eu"))))
    assert counts[("_requests_total", region)] == 3


def _labels(method: str, path: str, status: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted({"app_name": "shop", "method": method, "path": path, "status_code": status}.items())
    )


def test_the_shop_takes_the_lean_path() -> None:
    from entrypoints.app import HTTP_METRICS

    assert HTTP_METRICS.middleware_class is RequestMetrics
    assert RequestMetrics(item, HTTP_METRICS)._lean  # type: ignore[arg-type]

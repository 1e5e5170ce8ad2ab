"""One order placed in the monolith is one connected OpenTelemetry trace: every bus hop and
every handler of its saga, including the deliveries relays make later from the outboxes; an
HTTP request is a server span that continues its caller's trace. (Split deployments:
tests/topology/test_traces_split.py.)"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.observability.http_spans import request_spans, server_spans
from adapters.observability.tracing import Tracing
from adapters.payments.http_provider import HttpPaymentProvider
from adapters.payments.sandbox import SandboxPaymentProvider
from kernel import SYSTEM, Principal
from modules.catalog.contracts import AddProduct
from modules.inventory.contracts import Restock
from modules.ordering.contracts import GetOrder, OrderLineRequest, PlaceOrder
from tests.support.harness import TEST_SETTINGS, running_shop
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio

_CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def sandbox() -> Iterator[SandboxPaymentProvider]:
    with SandboxPaymentProvider(slow_seconds=1.0) as provider:
        yield provider


async def test_one_order_is_one_connected_trace(
    tmp_path: Path, sandbox: SandboxPaymentProvider
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    payments = HttpPaymentProvider.from_settings(sandbox.url, TEST_SETTINGS)
    customer = Principal(subject="c", roles=("customer",))
    try:
        async with running_shop(
            f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
            payment_provider=payments,
            tracing=Tracing(provider),
        ) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=450), principal=SYSTEM)
            await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
            assert await runtime.settle(30)
            exporter.clear()
            placed = await bus.send(
                PlaceOrder(lines=[OrderLineRequest(sku="TEA", quantity=1)], payment_token="tok_ok"),
                principal=customer,
            )
            assert await runtime.settle(30)
            order = await bus.ask(GetOrder(order_id=placed.id), principal=customer)
    finally:
        await payments.close()
    assert order.status == "CONFIRMED"
    spans: list[ReadableSpan] = [
        span
        for span in exporter.get_finished_spans()
        if not span.name.endswith("ordering.GetOrder")  # the test's own look afterwards
    ]
    traces = {span.context.trace_id for span in spans if span.context is not None}
    assert len(traces) == 1, Counter(span.name for span in spans)
    ids = {span.context.span_id for span in spans if span.context is not None}
    roots = [span for span in spans if span.parent is None]
    assert [root.name for root in roots] == ["send ordering.PlaceOrder"]
    orphans = [span.name for span in spans if span.parent and span.parent.span_id not in ids]
    assert not orphans
    names = Counter(span.name for span in spans)
    for step in (
        "handle ordering.PlaceOrder",
        "send catalog.GetProducts",
        "deliver inventory.ReserveStock",
        "handle inventory.ReserveStock",
        "deliver payments.CapturePayment",
        "handle payments.CapturePayment",
        "deliver ordering.OrderConfirmed",
    ):
        assert names[step] >= 1, names
    # Each handler span is a child of the hop that brought its message.
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    for span in spans:
        if span.name.startswith("handle ") and span.parent is not None:
            assert by_id[span.parent.span_id].name.split(" ", 1)[1] == span.name.split(" ", 1)[1]


#: A process with OTEL_EXPORTER_OTLP_ENDPOINT set sends one message; its spans must reach
#: the collector (a real HTTP server of the test). In its own process: the OTLP exporter is
#: configured once per process, globally.
_EXPORTING_PROCESS = """
import asyncio, sys, tempfile
from adapters.sqlalchemy.database import Database
from bench.trivial.contracts import Ping
from bench.trivial.module import module
from entrypoints.bootstrap import bootstrap
from kernel import SYSTEM

async def main():
    database = Database(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/unused.db")
    runtime = bootstrap(database=database, modules=[module])
    await runtime.start()
    await runtime.bus.send(Ping(), principal=SYSTEM)
    await runtime.stop(1)
    await database.dispose()
    await asyncio.sleep(1)  # the batch processor exports every 50 ms here

asyncio.run(main())
"""


def test_spans_go_to_the_otlp_endpoint_when_one_is_set(tmp_path: Path) -> None:
    received: list[str] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *arguments: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run(
            [sys.executable, "-c", _EXPORTING_PROCESS],
            cwd=ROOT,
            env={
                **os.environ,
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
            },
            check=True,
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "/v1/traces" in received


def test_a_request_is_a_server_span_that_continues_the_callers_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = Tracing(provider).tracer

    @post("/api/v1/things/{sku:str}", status_code=202)
    async def add(sku: FromPath[str]) -> dict[str, str]:
        with tracer.start_as_current_span("send things.AddThing"):  # as the bus's first hop
            return {"sku": sku}

    @get("/api/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @get("/health/live")
    async def live() -> None:
        return None

    app = Litestar([add, broken, live], middleware=[server_spans(tracer)], debug=False)
    with TestClient(app) as client:
        traceparent = f"00-{_CALLER_TRACE}-{_CALLER_SPAN}-01"
        assert client.post("/api/v1/things/TEA", headers={"traceparent": traceparent}).is_success
        assert client.get("/api/v1/broken").status_code == 500
        assert client.get("/health/live").is_success  # probes make no span
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == [
        "GET /api/v1/broken",
        "POST /api/v1/things/{sku}",
        "send things.AddThing",
    ]
    server = spans["POST /api/v1/things/{sku}"]
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == _CALLER_TRACE
    assert f"{server.parent.span_id:016x}" == _CALLER_SPAN
    assert dict(server.attributes or {}) == {
        "http.method": "POST",
        "http.route": "/api/v1/things/{sku}",
        "http.status_code": 202,
    }
    hop = spans["send things.AddThing"]
    assert hop.parent is not None and hop.parent.span_id == server.context.span_id
    failed = spans["GET /api/v1/broken"]
    assert failed.parent is None  # no traceparent: a trace of its own
    assert not failed.status.is_ok and (failed.attributes or {})["http.status_code"] == 500


def test_no_request_span_middleware_without_an_otlp_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tracing off: nothing is installed, so a request pays nothing for it.
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert request_spans() == []

"""One order placed through split-http and through split-redis is one connected trace.

Real processes (a gateway and one service or dramatiq worker per module, as ``cleave up``
starts them) export their spans over OTLP/HTTP to a real collector the test runs on
127.0.0.1, which decodes the protobuf requests. The batch processor waits far longer than the
test runs (``OTEL_BSP_SCHEDULE_DELAY``): every span arrives when the processes stop on
SIGTERM, so the test also proves that a stopping process sends what it still held.

The order's request carries a W3C ``traceparent`` (as a traced client or proxy would send):
the gateway's server span continues it, and every hop (HTTP or Redis, the outbox relays'
later deliveries included) and every handler of the saga must hang from it, in one tree.
"""

from __future__ import annotations

import gzip
import http.server
import secrets
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from adapters.payments.sandbox import SandboxPaymentProvider
from tests.support.deployments import ADMIN_EMAIL, ADMIN_PASSWORD, deployed
from tests.support.services import REDIS_URL, reachable, require
from tests.support.shop_client import ShopClient

pytestmark = [pytest.mark.slow, pytest.mark.soak]

#: What one paid order sets off, each step in the process that must run it.
HANDLERS = {
    "handle ordering.PlaceOrder": "ordering",
    "handle catalog.GetProducts": "catalog",
    "handle inventory.ReserveStock": "inventory",
    "handle inventory.StockReserved": "ordering",
    "handle payments.CapturePayment": "payments",
    "handle payments.PaymentCaptured": "ordering",
    "handle inventory.SellStock": "inventory",
    "handle inventory.StockSold": "ordering",
    "handle ordering.OrderConfirmed": "notifications",
}
#: Hops: the gateway's call, then the relays' later deliveries (from the outboxes).
HOPS = {
    "send ordering.PlaceOrder": "gateway",
    "send catalog.GetProducts": "ordering",
    "deliver inventory.ReserveStock": "ordering",
    "deliver inventory.StockReserved": "inventory",
    "deliver payments.CapturePayment": "ordering",
    "deliver ordering.OrderConfirmed": "ordering",
}


@dataclass(frozen=True)
class Span:
    """A span as the collector received it."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


class Collector:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        collector = self

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                collector.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *arguments: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def receive(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Span(
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex() or None,
                                name=span.name,
                                service=str(resource.get("service.name")),
                                kind=span.kind,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                attributes=_attributes(span.attributes),
                            )
                        )

    def __enter__(self) -> Collector:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


@dataclass(frozen=True)
class Traced:
    """One order placed through a deployment, and every span its processes sent."""

    trace_id: str
    #: The span of the (traced) client that sent the order, the parent of the gateway's.
    client_span: str
    spans: list[Span]
    #: Spans that arrived before the processes were told to stop.
    early: int


def trace_one_order(topology: str, directory: Path, provider: str) -> Traced:
    """Deploy ``topology``, place one order under a trace of our own, stop the deployment."""
    trace_id = secrets.token_hex(16)
    client_span = secrets.token_hex(8)
    with Collector() as collector:
        environment = {
            "CLEAVE_PAYMENT_PROVIDER_URL": provider,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            # Nothing is sent while the test runs: only what each process flushes as it stops.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }
        with (
            deployed(topology, directory, environment) as deployment,
            ShopClient(deployment.gateway_url) as shop,
        ):
            place_one_order(shop, f"00-{trace_id}-{client_span}-01")
            early = len(collector.spans)
        return Traced(trace_id, client_span, list(collector.spans), early)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Traced]:
    """Both topologies at once: each waits mostly for its processes to start and stop."""
    directory = tmp_path_factory.mktemp("traces")
    topologies = ["split-http"]
    if reachable(REDIS_URL, 6379):
        topologies.append("split-redis")  # else its test says why it does not run
    # One sandbox payment provider for both, in this process: two processes fewer to start.
    with SandboxPaymentProvider(slow_seconds=1.0) as sandbox, ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda name: trace_one_order(name, directory, sandbox.url), topologies)
        return dict(zip(topologies, done, strict=True))


@pytest.mark.parametrize("topology", ["split-http", "split-redis"])
def test_one_order_is_one_connected_trace(topology: str, traced: dict[str, Traced]) -> None:
    if topology not in traced:
        require("Redis", REDIS_URL, 6379, "CLEAVE_TEST_REDIS_URL")
    run = traced[topology]
    assert run.early == 0, "spans came before the processes stopped"
    trace_id, client_span = run.trace_id, run.client_span
    spans = [span for span in run.spans if span.trace_id == trace_id]
    print(f"\n{topology}:\n{render(spans, client_span)}")  # the excerpt in docs/observability.md
    names = Counter(span.name for span in spans)

    # One root, the gateway's server span, a child of the client's span; no orphan.
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id not in ids]
    assert [(r.name, r.service, r.parent_id) for r in roots] == [
        ("POST /api/v1/orders", "gateway", client_span)
    ], names
    server = roots[0]
    assert server.attributes == {
        "http.method": "POST",
        "http.route": "/api/v1/orders",
        "http.status_code": 202,
    }
    first_hops = [span.name for span in spans if span.parent_id == server.span_id]
    assert "send ordering.PlaceOrder" in first_hops, first_hops

    # Every hop and every handler of the saga, each in the process that runs it.
    where = {(span.name, span.service) for span in spans}
    for name, service in {**HOPS, **HANDLERS}.items():
        assert (name, service) in where, (name, service, sorted(where))
    assert {span.service for span in spans} >= {"gateway", *HANDLERS.values()}

    # Each handler span is a child of the hop that brought its message.
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        if span.name.startswith("handle "):
            hop = by_id[span.parent_id or ""]
            assert hop.name.split(" ", 1)[1] == span.name.split(" ", 1)[1], (hop.name, span.name)

    # Nothing the order set off went into another trace: every span of its conversation is here.
    conversation = by_id_name(spans, "handle ordering.PlaceOrder").attributes[
        "messaging.message.conversation_id"
    ]
    strays = [
        (span.name, span.service)
        for span in run.spans
        if span.attributes.get("messaging.message.conversation_id") == conversation
        and span.trace_id != trace_id
    ]
    assert not strays


def place_one_order(shop: ShopClient, traceparent: str) -> None:
    """Stock one product, place one paid order under ``traceparent``, and wait for its last
    effect (the customer's notification that it is confirmed)."""
    admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert shop.add_product(admin, "TRACE", 450).status == 201
    assert shop.restock(admin, "TRACE", 3).status == 200
    email = f"t-{uuid.uuid4().hex[:8]}@example.com"
    assert shop.register(email, "Ada").status == 201
    token = shop.log_in(email)
    placed = shop.call(
        "POST",
        "/api/v1/orders",
        token,
        json={"lines": [{"sku": "TRACE", "quantity": 1}], "payment_token": "tok_ok"},
        headers={"traceparent": traceparent},
    )
    assert placed.status == 202, placed
    assert shop.settled(token, placed.body["id"], within=30)["status"] == "CONFIRMED"
    # A welcome, then the confirmation: the relay's last delivery of the order.
    assert len(shop.eventually("/api/v1/notifications", token, count=2, within=30)) == 2


def by_id_name(spans: list[Span], name: str) -> Span:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, len(found))
    return found[0]


def render(spans: list[Span], root_parent: str) -> str:
    """The trace as an indented tree: span, service, duration (children by start time)."""
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            label = "  " * depth + span.name
            took = (span.end_ns - span.start_ns) / 1e6
            lines.append(f"{label:<58} {span.service:<14} {took:8.1f} ms")
            walk(span.span_id, depth + 1)

    walk(root_parent, 0)
    return "\n".join(lines)

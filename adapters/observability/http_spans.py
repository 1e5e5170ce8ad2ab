"""A server span per public HTTP request: the root of the trace of what the request sets off.

``POST /api/v1/orders`` opens the span ``POST /api/v1/orders`` (attributes ``http.method``,
``http.route``, ``http.status_code``); it is current while the route runs, so the first bus
hop the route makes (``send ordering.PlaceOrder``) is its child, and through the envelope
everything after it, in this process and in every other. A request that comes with a W3C
``traceparent`` header (a client or a proxy that traces) continues that trace.

Not traced: probes and scrapes (they say nothing about the users' traffic), and the internal
endpoints of the HTTP transport, whose frames carry the trace context in the envelope already
(a span there would start a trace of its own, cut off from the caller's).

A small ASGI middleware rather than opentelemetry-instrumentation-asgi: it needs one span and
three attributes, and when the process does not trace it is not installed at all, so it costs
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from litestar.config.app import AppConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

#: Probes, scrapes and the bus's own endpoints (traced through the envelope).
_UNTRACED = ("/health/", "/metrics", "/internal/")

Middleware = Callable[[ASGIApp], ASGIApp]


def request_spans() -> list[Callable[[AppConfig], AppConfig]]:
    """When this process traces (``OTEL_EXPORTER_OTLP_ENDPOINT`` is set), an ``on_app_init``
    hook that puts the server-span middleware first, outside every other (authentication
    included), and sends the batched spans when the app shuts down; else none."""
    # OpenTelemetry is imported only where it is used.
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return []
    from adapters.observability.tracing import process_tracing

    tracing = process_tracing()
    if tracing is None:
        return []
    middleware = server_spans(tracing.tracer)

    def outermost(config: AppConfig) -> AppConfig:
        config.middleware.insert(0, middleware)
        # Last of all at shutdown (after the runtime stopped): what is still batched goes
        # now, before uvicorn re-raises the SIGTERM it caught and the process dies of it.
        config.on_shutdown.append(tracing.flush)
        return config

    return [outermost]


def server_spans(tracer: Any) -> Middleware:
    """Litestar middleware opening a server span of ``tracer`` (an OpenTelemetry ``Tracer``)
    around every traced request."""
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()

    def middleware(app: ASGIApp) -> ASGIApp:
        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            http: Any = scope  # an HTTP scope once its type says so: method, path, headers
            if http["type"] != "http" or http["path"].startswith(_UNTRACED):
                await app(scope, receive, send)
                return
            method = http["method"]
            # Routing ran before the route's middleware: the template is known (ids stay out
            # of the span's name, so spans of one route group together).
            route = http.get("path_template") or http["path"]
            with tracer.start_as_current_span(
                f"{method} {route}",
                context=propagator.extract(_trace_headers(http["headers"])),
                kind=SpanKind.SERVER,
                attributes={"http.method": method, "http.route": route},
                # Litestar answers every exception with a response; one escaping is a 500.
                record_exception=True,
            ) as span:

                async def send_status(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        span.set_attribute("http.status_code", status)
                        if status >= 500:
                            span.set_status(Status(StatusCode.ERROR))
                    await send(message)

                await app(scope, receive, send_status)

        return traced

    return middleware


def _trace_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # Only the two W3C headers are read: nothing else of the request reaches a span.
    found: dict[str, str] = {}
    for name, value in headers:
        if name in (b"traceparent", b"tracestate"):
            found[name.decode("latin-1")] = value.decode("latin-1")
    return found

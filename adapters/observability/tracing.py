"""OpenTelemetry traces: a span per bus hop and per handler, joined by the envelope.

The envelope carries W3C trace context (``traceparent``, ``tracestate``) across every
transport, in process or over the wire, and through the outbox: a message delivered later by
a relay continues the trace of the request that caused it.

* A **hop** span (``send ordering.PlaceOrder``, ``deliver inventory.StockReserved``) wraps
  each call through a transport. Its parent is the span current where the call is made (the
  handler that sends), or, when nothing is current (a relay delivering from an outbox), the
  span in the envelope. The envelope then travels with the hop's context.
* A **handler** span (``handle ordering.PlaceOrder``) wraps each handler, a child of the hop
  in its envelope, and is current while the handler runs, so what it sends nests under it.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (spans go there over OTLP/HTTP,
named by ``OTEL_SERVICE_NAME`` or the process), or when a test passes its own provider.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable
from contextvars import Token
from typing import Any, cast

import msgspec
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernel.bus import Call, Transport
from kernel.messages import Envelope, Message
from kernel.observe import Outcome
from kernel.registry import Endpoint

_PROPAGATOR = TraceContextTextMapPropagator()

#: How long a stopping process waits for the collector to take its last spans: a collector
#: that is down must not hold up a deployment's stop.
FLUSH_SECONDS = 5.0

log = logging.getLogger("cleave.tracing")


def _parent(envelope: Envelope) -> context.Context | None:
    """The context of the span in ``envelope`` (``None``: there is none)."""
    if envelope.traceparent is None:
        return None
    carrier = {"traceparent": envelope.traceparent}
    if envelope.tracestate:
        carrier["tracestate"] = envelope.tracestate
    return _PROPAGATOR.extract(carrier)


class Tracing:
    """The kernel's ``Tracer`` (handler spans) and the transport wrapper (hop spans)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self._provider = provider or trace.get_tracer_provider()
        self._tracer = self._provider.get_tracer("cleave")

    def flush(self) -> None:
        """Send the spans still batched (the process is stopping), waiting
        ``FLUSH_SECONDS`` at most for the collector; never raises."""
        force_flush = getattr(self._provider, "force_flush", None)  # the SDK's provider has it
        if force_flush is None:
            return
        try:
            if not force_flush(int(FLUSH_SECONDS * 1000)):
                log.warning("spans still batched after %.0f s were not sent", FLUSH_SECONDS)
        except Exception:
            log.warning("could not send the last spans", exc_info=True)

    @property
    def tracer(self) -> trace.Tracer:
        """The OpenTelemetry tracer the spans come from (the HTTP server spans use it too)."""
        return self._tracer

    # -- handler spans (kernel.observe.Tracer) -----------------------------------------------

    def begin(self, endpoint: Endpoint, envelope: Envelope) -> object:
        span = self._tracer.start_span(
            f"handle {envelope.name}",
            context=_parent(envelope),
            kind=SpanKind.CONSUMER,
            attributes={
                "cleave.module": endpoint.module,
                "cleave.handler": endpoint.name,
                "messaging.message.id": envelope.message_id,
                "messaging.message.conversation_id": envelope.correlation_id or envelope.message_id,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        return span, token

    def end(self, began: object, outcome: Outcome) -> None:
        span, token = cast("tuple[trace.Span, Token[context.Context]]", began)
        span.set_attribute("cleave.outcome", outcome)
        if outcome == "failed":
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        context.detach(token)

    # -- hop spans ------------------------------------------------------------------------

    def transport(self, inner: Transport) -> Transport:
        """``inner``, with a hop span around every call and the hop's context in the
        envelope it carries."""
        return _TracedTransport(inner, self)

    async def hop(
        self, verb: str, module: str, call: Call, message: Message, envelope: Envelope
    ) -> Any:
        current = trace.get_current_span().get_span_context().is_valid
        with self._tracer.start_as_current_span(
            f"{verb} {envelope.name}",
            context=None if current else _parent(envelope),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.destination.name": module,
                "messaging.message.id": envelope.message_id,
                "messaging.message.conversation_id": envelope.correlation_id or envelope.message_id,
            },
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            traced = msgspec.structs.replace(
                envelope,
                traceparent=carrier.get("traceparent"),
                tracestate=carrier.get("tracestate") or None,
            )
            return await call(message, traced)


class _TracedTransport:
    def __init__(self, inner: Transport, tracing: Tracing) -> None:
        self._inner = inner
        self._tracing = tracing

    def requester(self, module: str, message: type[Message]) -> Call:
        inner = self._inner.requester(module, message)
        hop = self._tracing.hop

        def call(message: Message, envelope: Envelope) -> Awaitable[Any]:
            return hop("send", module, inner, message, envelope)

        return call

    def deliverer(self, module: str) -> Call:
        inner = self._inner.deliverer(module)
        hop = self._tracing.hop

        def call(message: Message, envelope: Envelope) -> Awaitable[Any]:
            return hop("deliver", module, inner, message, envelope)

        return call

    def __getattr__(self, name: str) -> Any:
        # Whatever else the transport offers (closing, health) is the inner one's.
        return getattr(self._inner, name)


_configured: Tracing | None = None


def process_tracing() -> Tracing | None:
    """The tracing of this process: exporting over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
    is set (configured once), else none (no span is made, and it costs nothing)."""
    global _configured
    if _configured is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        service = os.environ.get("OTEL_SERVICE_NAME") or os.environ.get("CLEAVE_SERVICE", "cleave")
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        # Batched (OTEL_BSP_SCHEDULE_DELAY, 5 s by default); what is left goes at exit.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _configured = Tracing(provider)
        _flush_at_exit(_configured)
    return _configured


def _flush_at_exit(tracing: Tracing) -> None:
    """Send the spans still batched when the process ends gracefully.

    The provider would do so at interpreter exit (``atexit``), but the processes of a
    deployment do not get there: uvicorn stops on SIGTERM and then raises SIGTERM again,
    which kills the process (``cleave run`` and ``cleave serve`` flush when their app shuts
    down instead: ``adapters.observability.http_spans``), and dramatiq's worker processes are
    multiprocessing children, which leave through ``os._exit``. multiprocessing runs its own
    finalizers before that, in the worker processes and at the exit of any other.
    """
    from multiprocessing.util import Finalize

    Finalize(None, tracing.flush, exitpriority=10)

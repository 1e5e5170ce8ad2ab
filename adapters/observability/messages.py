"""The kernel's ``Observer``: one log line, one count and one latency sample per handled message.

Queries log at DEBUG (they are the hot path: a page view asks several, and each line costs
tens of times what the bus does); commands, events and deferred commands at INFO; failures at
WARNING. Counts and latencies add up in plain lists here and become Prometheus families only
when ``/metrics`` is scraped: prometheus-client's ``Counter.inc`` and ``Histogram.observe``
take a lock each, which doubled the bus's cost per message (1.8 to 3.5 µs in
``bench.run --only bus``).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from adapters.observability.logs import FIELDS
from kernel.messages import Envelope
from kernel.observe import Arrival, Outcome
from kernel.registry import Endpoint

log = logging.getLogger("cleave.messages")

#: Upper bounds of the latency histogram's buckets, in seconds (``+Inf`` follows).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Tally:
    """The messages of one handler, transport and outcome: a count, their total seconds, and
    how many fell in each latency bucket (not cumulative: the last is past every bound)."""

    __slots__ = ("buckets", "count", "module", "name", "seconds")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None


class MessageObserver:
    """Logs and counts every message the dispatcher of this process handles."""

    def __init__(self, wire: str = "wire") -> None:
        #: The name of the transport that brings messages over the wire into this process
        #: (``http`` in a service, ``redis`` in a worker, ``loopback``), for the labels.
        self.wire = wire
        self._tallies: dict[tuple[str, str, str], _Tally] = {}

    def handled(
        self,
        endpoint: Endpoint,
        envelope: Envelope,
        seconds: float,
        outcome: Outcome,
        arrival: Arrival,
    ) -> None:
        transport = self.wire if arrival == "wire" else arrival
        key = (endpoint.name, transport, outcome)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(endpoint.module, envelope.name)
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(BUCKETS, seconds)] += 1
        if outcome == "failed":
            level = logging.WARNING
        elif endpoint.kind == "query":
            level = logging.DEBUG
        else:
            level = logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s",
                envelope.name,
                outcome,
                extra={
                    FIELDS: {
                        "module": endpoint.module,
                        "handler": endpoint.name,
                        "message": envelope.name,
                        "message_id": envelope.message_id,
                        # A message that starts a conversation is its own correlation.
                        "correlation_id": envelope.correlation_id or envelope.message_id,
                        "trace_id": trace_id(envelope.traceparent),
                        "transport": transport,
                        "duration_ms": round(seconds * 1000, 3),
                        "outcome": outcome,
                        "user_id": _user_id(envelope),
                    }
                },
            )

    def collect(self) -> Iterator[Metric]:
        """The counter and histogram families of what was observed so far."""
        handled = CounterMetricFamily(
            "cleave_messages_handled",
            "Messages a handler of this process ran, by module, message, the transport that "
            "brought it and outcome (handled, repeat, refused, failed)",
            labels=["module", "message", "transport", "outcome"],
        )
        merged: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        # A copy: the event loop may add a tally while a scrape thread reads.
        for (_, transport, outcome), tally in list(self._tallies.items()):
            handled.add_metric([tally.module, tally.name, transport, outcome], tally.count)
            key = (tally.module, tally.name, transport)
            buckets, seconds = merged.get(key, ([0] * len(tally.buckets), 0.0))
            merged[key] = (
                [a + b for a, b in zip(buckets, tally.buckets, strict=True)],
                seconds + tally.seconds,
            )
        latency = HistogramMetricFamily(
            "cleave_message_handling_seconds",
            "How long a handler of this process took, its unit of work and commit included",
            labels=["module", "message", "transport"],
        )
        for labels, (buckets, seconds) in merged.items():
            cumulative, running = [], 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), buckets, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            latency.add_metric(list(labels), cumulative, seconds)
        yield handled
        yield latency


def _user_id(envelope: Envelope) -> str | None:
    principal = envelope.principal
    return principal.subject if principal is not None and principal.kind == "user" else None


#: The observer of this process: one, so that every runtime it wires counts into the same
#: metrics.
OBSERVER = MessageObserver()

"""The ports the dispatcher reports every handled message to: an ``Observer`` (the adapters
turn each call into a log line and metrics) and a ``Tracer`` (spans). Without them, it
measures nothing."""

from __future__ import annotations

from typing import Literal, Protocol

from kernel.messages import Envelope
from kernel.registry import Endpoint

#: How a message's handling ended: ``handled`` (committed), ``repeat`` (the inbox already held
#: it: no second effect), ``refused`` (the handler raised a typed error its caller acts on: not
#: found, conflict, rejected...) or ``failed`` (anything else: the sender retries or gives up).
Outcome = Literal["handled", "repeat", "refused", "failed"]

#: How the message reached the dispatcher: ``inprocess`` (a direct call), or ``wire`` (through
#: the receiving side of a transport that crosses the wire: loopback, HTTP, Redis).
Arrival = Literal["inprocess", "wire"]


class Observer(Protocol):
    """Told about every message a handler of this process ran (or skipped as a repeat)."""

    def handled(
        self,
        endpoint: Endpoint,
        envelope: Envelope,
        seconds: float,
        outcome: Outcome,
        arrival: Arrival,
    ) -> None:
        """``endpoint`` handled the message of ``envelope`` in ``seconds`` (wall time, retries
        of lost concurrency races included), ending in ``outcome``. Must not raise, and must be
        cheap: it runs on every message."""
        ...


class Tracer(Protocol):
    """Opens a span around every handler this process runs (OpenTelemetry, in the adapters).

    ``begin`` runs before the handler, in the task that runs it, so that what the handler
    sends belongs to the span; ``end`` closes what ``begin`` returned, whatever happened.
    """

    def begin(self, endpoint: Endpoint, envelope: Envelope) -> object:
        """Open the span of ``endpoint`` handling the message of ``envelope``."""
        ...

    def end(self, began: object, outcome: Outcome) -> None:
        """Close the span ``begin`` opened; must not raise."""
        ...

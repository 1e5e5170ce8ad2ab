"""Items 3 and 4: the HTTP and Redis transports between services. Not measurable yet.

When a transport lands, its measurement goes here, next to the in-process bus of item 1 and
its loopback row (which already shows the cost of the wire codec alone): a trivial command
and query sent to a module hosted in another process, per second and µs per message, over
real sockets on 127.0.0.1. ``deployment.start`` gains the split topologies at the same time,
which fills the split rows of items 5 and 6.
"""

from __future__ import annotations

from bench.report import Section, not_measured


def measure_http(*, quick: bool) -> Section:
    """Item 3: a trivial command and query over the HTTP transport."""
    return not_measured(
        "3. HTTP transport",
        "needs the HTTP transport",
        ["http_send_us", "http_msgs_per_s"],
    )


def measure_redis(*, quick: bool) -> Section:
    """Item 4: a trivial command and query over the Redis transport."""
    return not_measured(
        "4. Redis transport",
        "needs the Redis transport",
        ["redis_send_us", "redis_msgs_per_s"],
    )

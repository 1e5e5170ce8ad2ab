"""How a Cleave process serves HTTP: uvicorn, guarded against clients that are slow or many.

uvicorn holds a connection for as long as its request head takes to arrive (it has a
keep-alive timeout, but none for the head), accepts connections until the process runs out
of file descriptors, and then logs a traceback for every failed ``accept()``: about two
thousand a second. So the server runs with

* a deadline for the request head (``header_timeout``): a connection that has not sent a
  complete head by then is closed, the first one and every one after a keep-alive pause;
* a connection limit (``max_connections``, kept below the file limit): a connection past it
  gets a 503 with ``Retry-After`` and is closed at once, before it costs more than its
  socket, and the refusals are logged at most once a minute, with their count;
* an event loop whose ``accept()`` failures (EMFILE: files exhausted elsewhere) are logged
  once a minute with a count, not once per attempt;
* the client address taken from ``X-Forwarded-For`` only when the peer is a trusted proxy
  (``trusted_proxies``; none by default, where uvicorn would trust 127.0.0.1).

The body's read timeout is the app's (``adapters.http.slow_clients``): only the app knows
when it is waiting for a body.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.http.one_send import OneSendTransport
from adapters.http.quiet_log import EveryFewSeconds

log = logging.getLogger("cleave.http.server")

#: File descriptors kept for everything but client connections: databases, the clients of
#: other services, Redis, the sandbox provider, log files.
RESERVED_FILES = 128

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\n\r\n"
    b"too many connections: retry soon\n"
)
_ACCEPT_FAILED = "socket.accept() out of system resource"


@dataclass(frozen=True)
class ServerLimits:
    """What a server accepts from its clients."""

    #: Seconds a client has to send a complete request head.
    header_timeout: float = 10.0
    #: Open client connections at most (lowered to fit the process's file limit).
    max_connections: int = 1000
    #: Addresses or networks of the proxies whose ``X-Forwarded-For`` is believed.
    trusted_proxies: tuple[str, ...] = ()


def serve(app: str, *, host: str, port: int, limits: ServerLimits, graceful_seconds: float) -> None:
    """Serve the ASGI app factory ``app`` ("module:function") until a signal stops it."""
    import uvicorn

    uvicorn.run(app, **uvicorn_options(limits, graceful_seconds), host=host, port=port)


def uvicorn_options(limits: ServerLimits, graceful_seconds: float) -> dict[str, Any]:
    """The arguments of ``uvicorn.run`` / ``uvicorn.Config`` that apply ``limits``."""
    connections = connection_limit(limits.max_connections)
    return {
        "factory": True,
        "log_config": None,
        # The request log (adapters.observability.requests) is the access log.
        "access_log": False,
        "timeout_graceful_shutdown": int(graceful_seconds),
        "http": guarded_protocol(limits.header_timeout, connections),
        "loop": f"{__name__}:quiet_loop",
        "proxy_headers": bool(limits.trusted_proxies),
        "forwarded_allow_ips": list(limits.trusted_proxies) or None,
    }


def connection_limit(wanted: int) -> int:
    """``wanted``, or less if the file limit (raised to its hard maximum first) is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    fitting = max(16, soft - max(RESERVED_FILES, soft // 4))
    if fitting < wanted:
        log.info("at most %d connections: the file limit is %d", fitting, soft)
    return min(wanted, fitting)


def guarded_protocol(header_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a head deadline and a connection limit, sending each
    response in one write (``one_send``).

    httptools rather than h11: h11 parses in Python, about 8% of the server's GIL time per
    order at 100 orders/s (issue 12: 3.67 -> 3.47 ms of CPU per order, ADR 17 section 11)."""

    refusals = EveryFewSeconds(60)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                if refusals.now():
                    log.warning(
                        "%d connections open: refusing more (limit %d)%s",
                        len(self.connections) - 1,
                        max_connections,
                        _since_last(refusals),
                    )
                transport.write(_BUSY)
                transport.close()
                return
            # Responses are written through the transport the protocol holds when their
            # request's head completes.
            self.transport = OneSendTransport(transport, self.loop)  # type: ignore[assignment]
            self._await_head()

        def data_received(self, data: bytes) -> None:
            # Between requests uvicorn's keep-alive timeout covers the silence; the deadline
            # of the next head starts with its first bytes.
            super().data_received(data)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _head_awaited(self) -> bool:
            # The newest complete head makes a cycle (queued behind the one running, if
            # pipelined), and responses complete in order: once the newest is answered, what
            # the parser holds, if anything, is a head not complete yet.
            cycle = self.cycle
            return (cycle is None or cycle.response_complete) and not self.transport.is_closing()

        def _await_head(self) -> None:
            waiting = self._head_awaited()
            if waiting and self._head_deadline is None:
                self._head_deadline = self.loop.call_later(header_timeout, self._too_slow)
            elif not waiting:
                self._stop_waiting()

        def _stop_waiting(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _too_slow(self) -> None:
            self._head_deadline = None
            if self._head_awaited():
                self.transport.close()

    return GuardedHttpToolsProtocol


_accept_failures = EveryFewSeconds(60)


def quiet_loop() -> asyncio.AbstractEventLoop:
    """An asyncio event loop that logs failed ``accept()`` calls once a minute."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_quiet_accept_failures)
    return loop


def _quiet_accept_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if context.get("message") != _ACCEPT_FAILED:
        loop.default_exception_handler(context)
        return
    if _accept_failures.now():
        log.error(
            "cannot accept connections: %s (retrying every second)%s",
            context.get("exception"),
            _since_last(_accept_failures),
        )


def _since_last(limiter: EveryFewSeconds) -> str:
    held_back = limiter.take_suppressed()
    return f"; {held_back} more since the last report" if held_back else ""

"""A sandbox payment provider: a real HTTP server that behaves like a card processor.

Tests, the demo and ``cleave run`` talk to it over real HTTP through the same adapter as the
real provider, so timeouts, retries, idempotency and the circuit breaker are exercised for real.
The token decides what happens to a charge:

========================  ================================================================
``tok_ok``                201, captured
``tok_declined``          201, declined ("card declined")
``tok_error``             500 (nothing is charged, nothing is remembered: a retry may try again)
``tok_slow``              answers after ``slow_seconds``, then captured
anything else             402, declined ("invalid token")
========================  ================================================================

``POST /v1/charges`` needs an ``Idempotency-Key`` header: the same key returns the first answer
and never charges twice, and a request that arrives while the first with its key is still in
flight waits for it. ``POST /v1/charges/{key}/void`` refunds a captured charge and blocks every
capture of that key still in flight or still to come (they answer "voided", charging nothing).
``GET /v1/charges?reference=...`` lists charges and ``GET /v1/stats`` counts capture requests.

Run one on its own with ``python -m adapters.payments.sandbox --port 8099``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Response

log = logging.getLogger("cleave.payments.sandbox")

#: The tokens the sandbox understands (any other token is declined as invalid).
TOKENS = ("tok_ok", "tok_declined", "tok_error", "tok_slow")

Status = Literal["captured", "declined", "voided"]
#: A status code and a JSON body.
Answer = tuple[int, dict[str, Any]]


class ChargeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    amount_cents: int
    currency: str
    token: str
    reference: str | None = None


@dataclass
class SandboxCharge:
    """One charge the sandbox recorded for one idempotency key."""

    id: str
    idempotency_key: str
    amount_cents: int
    currency: str
    reference: str | None
    status: Status
    reason: str | None
    #: The status code of the first answer (201, or 402 for an invalid token); repeats reuse it.
    status_code: int
    created_at: float
    #: Recording order, for listings.
    sequence: int

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "reference": self.reference,
            "status": self.status,
            "reason": self.reason,
            "created_at": self.created_at,
        }


@dataclass
class Ledger:
    """The sandbox's state. Touched only from the server's event loop, so it needs no lock."""

    slow_seconds: float
    api_key: str | None = None
    charges: dict[str, SandboxCharge] = field(default_factory=dict)
    #: Keys voided so far: their captures (in flight or future) charge nothing.
    voided: set[str] = field(default_factory=set)
    #: Captures being processed, by key: later requests with the key wait for them.
    in_flight: dict[str, asyncio.Task[Answer]] = field(default_factory=dict)
    requests: int = 0
    closing: asyncio.Event | None = None
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    def authorized(self, request: Request[Any, Any, Any]) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def capture(self, key: str, charge: ChargeRequest) -> Answer:
        existing = self.charges.get(key)
        if existing is not None:
            return existing.status_code, existing.body()
        task = self.in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._process(key, charge))
            self.in_flight[key] = task
            task.add_done_callback(lambda _: self.in_flight.pop(key, None))
        # Shielded: a client that gives up (a timeout) must not cancel the charge itself.
        return await asyncio.shield(task)

    async def _process(self, key: str, charge: ChargeRequest) -> Answer:
        if key in self.voided:
            return self._record(key, charge, "voided", "voided before capture", 201)
        if charge.token == "tok_error":
            return 500, {"error": "the processor failed (tok_error)"}
        if charge.token == "tok_slow":
            if await self._interrupted(self.slow_seconds):
                return 503, {"error": "the sandbox is shutting down"}
            if key in self.voided:
                return self._record(key, charge, "voided", "voided while in flight", 201)
            return self._record(key, charge, "captured", None, 201)
        if charge.token == "tok_ok":
            return self._record(key, charge, "captured", None, 201)
        if charge.token == "tok_declined":
            return self._record(key, charge, "declined", "card declined", 201)
        return self._record(key, charge, "declined", "invalid token", 402)

    async def _interrupted(self, seconds: float) -> bool:
        """Wait ``seconds``; True if the sandbox started shutting down meanwhile."""
        assert self.closing is not None
        try:
            await asyncio.wait_for(self.closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _record(
        self, key: str, charge: ChargeRequest, status: Status, reason: str | None, code: int
    ) -> Answer:
        recorded = SandboxCharge(
            id=f"ch_{uuid.uuid4().hex[:20]}",
            idempotency_key=key,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
            reference=charge.reference,
            status=status,
            reason=reason,
            status_code=code,
            created_at=time.time(),
            sequence=next(self._sequence),
        )
        self.charges[key] = recorded
        return code, recorded.body()

    def void(self, key: str) -> dict[str, Any]:
        self.voided.add(key)
        charge = self.charges.get(key)
        if charge is not None and charge.status == "captured":
            charge.status = "voided"  # refunded
            charge.reason = "voided after capture"
        return {"idempotency_key": key, "status": "voided"}

    def listing(self, reference: str | None) -> list[dict[str, Any]]:
        charges = sorted(self.charges.values(), key=lambda charge: charge.sequence)
        if reference is not None:
            charges = [charge for charge in charges if charge.reference == reference]
        return [charge.body() for charge in charges]


def _json(body: Any, status: int) -> Response[Any]:
    return Response(body, status_code=status, media_type="application/json")


_UNAUTHORIZED = {"error": "missing or wrong bearer token"}


def create_app(ledger: Ledger) -> Litestar:
    """The sandbox's ASGI app over ``ledger``."""

    @post("/v1/charges", status_code=201)
    async def create_charge(request: Request[Any, Any, Any]) -> Response[Any]:
        ledger.requests += 1
        if not ledger.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        key = request.headers.get("idempotency-key")
        if not key:
            return _json({"error": "the Idempotency-Key header is required"}, 400)
        try:
            charge = msgspec.json.decode(await request.body(), type=ChargeRequest)
        except msgspec.DecodeError as error:
            return _json({"error": f"bad charge: {error}"}, 400)
        status, body = await ledger.capture(key, charge)
        return _json(body, status)

    @post("/v1/charges/{key:str}/void", status_code=200)
    async def void_charge(key: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
        if not ledger.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        return _json(ledger.void(key), 200)

    @get("/v1/charges")
    async def list_charges(
        request: Request[Any, Any, Any], reference: FromQuery[str | None] = None
    ) -> Response[Any]:
        if not ledger.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        return _json(ledger.listing(reference), 200)

    @get("/v1/stats")
    async def stats(request: Request[Any, Any, Any]) -> Response[Any]:
        if not ledger.authorized(request):
            return _json(_UNAUTHORIZED, 401)
        return _json({"requests": ledger.requests, "charges": len(ledger.charges)}, 200)

    async def on_startup() -> None:
        ledger.closing = asyncio.Event()

    return Litestar(
        route_handlers=[create_charge, void_charge, list_charges, stats],
        on_startup=[on_startup],
        logging_config=None,
        openapi_config=None,
    )


class _QuietThread(logging.Filter):
    """Drops uvicorn's routine records (start-up, access log) from one thread."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name or record.levelno >= logging.WARNING


_UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")
_ports = itertools.count(1)


def _config(app: Litestar, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # No logging set-up and no level changes: uvicorn's loggers are process-wide, and the
        # app that hosts a sandbox may run uvicorn itself.
        log_config=None,
        log_level=None,
        lifespan="on",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
    )


class SandboxPaymentProvider:
    """The sandbox served by uvicorn on a background thread with its own event loop.

    ``start()`` returns once the server accepts connections; ``url`` is then its address.
    Usable as a context manager. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 10.0,
        api_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ledger = Ledger(slow_seconds=slow_seconds, api_key=api_key)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quiet: _QuietThread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind, serve on a background thread, and return once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        app = create_app(self.ledger)
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it every answer waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        name = f"cleave-payment-sandbox-{next(_ports)}"
        self._quiet = _QuietThread(name)
        for logger in _UVICORN_LOGGERS:
            logging.getLogger(logger).addFilter(self._quiet)
        self._server = uvicorn.Server(_config(app, host=self.host, port=self.port))
        self._thread = threading.Thread(target=self._run, args=(sock,), name=name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the payment sandbox did not start: {self._failure!r}")
            time.sleep(0.002)

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as error:  # reported by start(); a thread must not raise
            self._failure = error
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    def stop(self) -> None:
        """Answer captures still waiting (503), stop serving and join the thread."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        closing = self.ledger.closing
        if loop is not None and closing is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just stopped
                loop.call_soon_threadsafe(closing.set)
        server.should_exit = True
        thread.join(timeout=15)
        if self._quiet is not None:
            for logger in _UVICORN_LOGGERS:
                logging.getLogger(logger).removeFilter(self._quiet)
        self._server = self._thread = self._loop = self._quiet = None

    def __enter__(self) -> SandboxPaymentProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a standalone sandbox in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Cleave's sandbox payment provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--slow-seconds", type=float, default=10.0)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ledger = Ledger(slow_seconds=args.slow_seconds, api_key=args.api_key)
    log.info("sandbox payment provider on http://%s:%d", args.host, args.port)
    uvicorn.Server(_config(create_app(ledger), host=args.host, port=args.port)).run()


if __name__ == "__main__":
    main()

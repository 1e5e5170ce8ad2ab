"""``cleave demo``: the whole shop on a fresh database, driven over HTTP, told as a table.

The real app (every module, the real bus, a sandbox payment provider reached over real HTTP)
serves an admin who adds products and stock, and a customer who places orders that are paid,
declined, failed by the provider, and bigger than the stock. The customer waits for each order
to end (``GET /api/v1/orders/{id}?wait=``), as a client would; then the demo prints what
happened to the orders, the stock, and the customer's notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from adapters.payments.sandbox import SandboxPaymentProvider
from entrypoints.app import create_app
from entrypoints.settings import Settings

ADMIN_EMAIL = "admin@example.com"
CUSTOMER_NAME = "Ada Lovelace"
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}
#: How long the demo waits for one order to end before it gives up.
ORDER_PATIENCE_SECONDS = 30.0
#: The longest one GET waits for an order, well within the HTTP client's timeout.
ORDER_WAIT_SECONDS = 20


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    stock: int


PRODUCTS = [
    Product("TEA-SENCHA", "Sencha green tea, 100 g", 450, 10),
    Product("POT-IRON", "Cast-iron teapot", 3_200, 2),
    Product("CUP-PORCELAIN", "Porcelain cup", 600, 6),
    Product("HONEY-JAR", "Acacia honey jar", 750, 4),
]


@dataclass(frozen=True)
class Scenario:
    """One order the customer places, and what the demo means to show with it."""

    story: str
    lines: list[tuple[str, int]]
    payment_token: str


SCENARIOS = [
    Scenario("paid", [("TEA-SENCHA", 2), ("CUP-PORCELAIN", 2)], "tok_ok"),
    Scenario("card declined", [("POT-IRON", 1)], "tok_declined"),
    Scenario("provider fails", [("HONEY-JAR", 1)], "tok_error"),
    Scenario("more than in stock", [("POT-IRON", 5)], "tok_ok"),
    Scenario("paid", [("POT-IRON", 1), ("HONEY-JAR", 2)], "tok_ok"),
]


async def run_demo_at(
    url: str, admin_email: str, admin_password: str, *, out: TextIO | None = None
) -> None:
    """Run the demo against a running deployment (``cleave run`` or ``cleave up``) whose
    identity ensures the admin ``admin_email`` (``CLEAVE_ADMIN_EMAIL``/``_PASSWORD``)."""
    import httpx

    out = out or sys.stdout
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    started = time.monotonic()
    print(f"Cleave demo: the shop at {url}\n", file=out)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        demo = _Demo(client, admin_email)
        await demo.run(admin_password)
    _report(demo, out, time.monotonic() - started)


async def run_demo(database_url: str | None = None, *, out: TextIO | None = None) -> None:
    """Run the demo against ``database_url`` (default: a fresh temporary SQLite file)."""
    out = out or sys.stdout
    with contextlib.ExitStack() as stack:
        if database_url is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cleave-demo-")))
            database_url = f"sqlite+aiosqlite:///{folder / 'demo.db'}"
        stack.enter_context(_quiet_logs())
        sandbox = SandboxPaymentProvider(slow_seconds=1.0)
        sandbox.start()
        stack.callback(sandbox.stop)
        admin_password = secrets.token_urlsafe(12)
        settings = Settings(
            database_url=database_url,
            jwt_secret=secrets.token_urlsafe(32),
            admin_email=ADMIN_EMAIL,
            admin_password=admin_password,
            password_hash_cost="low",
            payment_provider_url=sandbox.url,
            delivery_backoff_seconds=0.05,
        )
        started = time.monotonic()
        print(f"Cleave demo: the whole shop on {_display(database_url)}", file=out)
        print(f"payment provider: sandbox at {sandbox.url}\n", file=out)
        async with AsyncTestClient(app=create_app(settings)) as client:
            demo = _Demo(client)
            await demo.run(admin_password)
        _report(demo, out, time.monotonic() - started)


class _Demo:
    """The demo's HTTP client and what it saw."""

    def __init__(self, client: Any, admin_email: str = ADMIN_EMAIL) -> None:
        self.client = client
        self.admin_email = admin_email
        self.customer_id = ""
        self.restocked: dict[str, int] = {}
        self.orders: list[tuple[Scenario, dict[str, Any]]] = []
        self.stock: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []

    async def run(self, admin_password: str) -> None:
        admin = await self.log_in(self.admin_email, admin_password)
        for product in PRODUCTS:
            await self.add_product(admin, product)
        # A new address each run, so that a database given with --database-url can be reused.
        email = f"ada+{secrets.token_hex(3)}@example.com"
        password = secrets.token_urlsafe(12)
        user = await self.call(
            "POST",
            "/api/v1/identity/register",
            json={"email": email, "password": password, "name": CUSTOMER_NAME},
        )
        self.customer_id = user["id"]
        customer = await self.log_in(email, password)

        placed = []
        for scenario in SCENARIOS:
            body = {
                "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in scenario.lines],
                "payment_token": scenario.payment_token,
            }
            placed.append(
                (scenario, await self.call("POST", "/api/v1/orders", customer, json=body))
            )
        for scenario, order in placed:
            self.orders.append((scenario, await self.settled(customer, order["id"])))
        self.stock = [await self.call("GET", f"/api/v1/inventory/{p.sku}") for p in PRODUCTS]
        # Notifications come from events, a moment after the orders end.
        self.notifications = await self.eventually(
            customer, "/api/v1/notifications", len(SCENARIOS) + 1
        )

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    async def log_in(self, email: str, password: str) -> str:
        token = await self.call(
            "POST", "/api/v1/identity/login", json={"email": email, "password": password}
        )
        return str(token["access_token"])

    async def add_product(self, admin: str, product: Product) -> None:
        response = await self.client.post(
            "/api/v1/catalog/products",
            headers={"Authorization": f"Bearer {admin}"},
            json={"sku": product.sku, "name": product.name, "price_cents": product.price_cents},
        )
        if response.status_code not in (201, 409):  # 409: kept from an earlier run
            raise RuntimeError(f"adding {product.sku} answered {response.status_code}")
        await self.call(
            "POST",
            f"/api/v1/inventory/{product.sku}/restock",
            admin,
            json={"quantity": product.stock},
        )
        self.restocked[product.sku] = product.stock

    async def settled(self, token: str, order_id: str) -> dict[str, Any]:
        """Wait for the order to end, as a client would: the shop answers once it has."""
        deadline = time.monotonic() + ORDER_PATIENCE_SECONDS
        while True:
            # Each wait stays within the client's own timeout (the HTTP client's 30 s).
            left = min(ORDER_WAIT_SECONDS, max(1, int(deadline - time.monotonic())))
            order: dict[str, Any] = await self.call(
                "GET", f"/api/v1/orders/{order_id}", token, params={"wait": left}
            )
            if order["status"] in TERMINAL or time.monotonic() > deadline:
                return order

    async def eventually(self, token: str, path: str, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + ORDER_PATIENCE_SECONDS
        while True:
            found: list[dict[str, Any]] = await self.call("GET", path, token)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await _pause()


async def _pause() -> None:
    await asyncio.sleep(0.05)


# -- the report -------------------------------------------------------------------------------


def _report(demo: _Demo, out: TextIO, seconds: float) -> None:
    names = {product.sku: product.name for product in PRODUCTS}
    print("Orders placed by the customer (each waited for until it ended):", file=out)
    rows = [
        [
            order["id"][:8],
            scenario.story,
            ", ".join(f"{line['quantity']} x {line['sku']}" for line in order["lines"]),
            _money(order["total_cents"], order["currency"]),
            scenario.payment_token,
            order["status"],
            order["reason"] or "",
        ]
        for scenario, order in demo.orders
    ]
    _table(out, ["order", "story", "lines", "total", "token", "status", "reason"], rows)

    print("\nStock afterwards (nothing stays reserved once every order has ended):", file=out)
    stock_rows = [
        [
            level["sku"],
            names[level["sku"]],
            str(demo.restocked.get(level["sku"], "")),
            str(level["on_hand"]),
            str(level["reserved"]),
            str(level["available"]),
        ]
        for level in demo.stock
    ]
    _table(out, ["sku", "product", "restocked", "on hand", "reserved", "available"], stock_rows)

    print(f"\nNotifications for {CUSTOMER_NAME} (newest first):", file=out)
    note_rows = [_notification_row(note) for note in demo.notifications]
    _table(out, ["order", "subject", "message"], note_rows)

    statuses = [order["status"] for _, order in demo.orders]
    counts = ", ".join(
        f"{statuses.count(status)} {status.lower()}"
        for status in ("CONFIRMED", "CANCELLED", "REJECTED", "PENDING")
        if status in statuses
    )
    reserved = sum(level["reserved"] for level in demo.stock)
    print(
        f"\n{len(statuses)} orders: {counts}; {reserved} units left reserved; "
        f"{len(demo.notifications)} notifications; {seconds:.1f} s.",
        file=out,
    )


#: Cells longer than this are cut, so that a table fits a wide terminal.
CELL_WIDTH = 72


def _notification_row(note: dict[str, Any]) -> list[str]:
    order_id = note["order_id"] or ""
    # The message names the whole order id; the short one of the first column is enough.
    body = note["body"].replace(order_id, order_id[:8]) if order_id else note["body"]
    return [order_id[:8], note["subject"], body]


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    rows = [[_cut(str(cell)) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, ["-" * width for width in widths], *rows]:
        line = "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  " + line.rstrip(), file=out)


def _cut(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."


def _money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def _display(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep the demo's output to its tables: the shop's own logs (and the payment adapter's
    retry notices) stay quiet below ERROR for the length of the demo."""
    import stamina.instrumentation

    names = ("cleave", "litestar", "stamina", "httpx", "httpcore", "uvicorn")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    hooks = stamina.instrumentation.get_on_retry_hooks()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    stamina.instrumentation.set_on_retry_hooks([])
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        stamina.instrumentation.set_on_retry_hooks(hooks)

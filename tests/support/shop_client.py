"""A client of a running shop's public API, as a user's program would be: plain HTTP.

It drives any deployment (``cleave run``, ``cleave up`` of any topology) through the same
routes, and records every answer so that a test can compare deployments answer by answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}
PASSWORD = "marmalade-sky-42"


@dataclass
class Answer:
    """What one call answered: its status and its JSON body (or text)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ShopClient:
    """Calls the public API at ``base_url``; ``timeout`` bounds every call (never a hang)."""

    base_url: str
    timeout: float = 30.0
    answers: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ShopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._http.request(method, path, headers=headers, **kwargs)
        self.answers.append((method, path, response.status_code))
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(response.status_code, body, response.headers)

    # -- the journey ------------------------------------------------------------------------

    def log_in(self, email: str, password: str = PASSWORD) -> str:
        answer = self.call(
            "POST", "/api/v1/identity/login", json={"email": email, "password": password}
        )
        assert answer.status == 200, answer
        return str(answer.body["access_token"])

    def register(self, email: str, name: str) -> Answer:
        return self.call(
            "POST",
            "/api/v1/identity/register",
            json={"email": email, "password": PASSWORD, "name": name},
        )

    def add_product(self, admin: str, sku: str, price_cents: int) -> Answer:
        return self.call(
            "POST",
            "/api/v1/catalog/products",
            admin,
            json={"sku": sku, "name": f"The {sku.lower()}", "price_cents": price_cents},
        )

    def restock(self, admin: str, sku: str, quantity: int) -> Answer:
        return self.call(
            "POST", f"/api/v1/inventory/{sku}/restock", admin, json={"quantity": quantity}
        )

    def place_order(self, token: str, lines: list[tuple[str, int]], payment: str) -> Answer:
        body = {
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
            "payment_token": payment,
        }
        return self.call("POST", "/api/v1/orders", token, json=body)

    def settled(self, token: str, order_id: str, within: float = 60.0) -> dict[str, Any]:
        """Poll the order until it is terminal, as a client would."""
        end = time.monotonic() + within
        while True:
            answer = self.call("GET", f"/api/v1/orders/{order_id}", token)
            assert answer.status == 200, answer
            if answer.body["status"] in TERMINAL:
                return dict(answer.body)
            if time.monotonic() > end:
                raise AssertionError(f"order {order_id} is still {answer.body['status']}")
            time.sleep(0.02)

    def eventually(
        self, path: str, token: str | None, count: int, within: float = 30.0
    ) -> list[Any]:
        """GET a list until it holds at least ``count`` items (they come from events)."""
        end = time.monotonic() + within
        while True:
            answer = self.call("GET", path, token)
            assert answer.status == 200, answer
            if len(answer.body) >= count or time.monotonic() > end:
                return list(answer.body)
            time.sleep(0.05)

"""What an operator sees of a real ``cleave run`` after a shop journey: its JSON log lines
(one per handled message and per request, and no secret in any of them) and its /metrics.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Process, start_app
from tests.support.shop_client import PASSWORD, ShopClient

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "quartz-lantern-admin-88"
JWT_SECRET = "observability-jwt-secret-0123456789abcdef"
SERVICE_KEY = "observability-service-key-0123456789abcdef"


@dataclass
class Journey:
    """What the journey did, and what it left behind."""

    url: str
    process: Process
    tokens: list[str]
    orders: dict[str, str]  # order id -> terminal status
    customer_id: str


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    """``cleave run`` with DEBUG JSON logs: register, log in, order once paid and once
    declined, each to its end."""
    directory = tmp_path_factory.mktemp("observed")
    process, url = start_app(
        directory,
        {
            "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'shop.db'}",
            "CLEAVE_PASSWORD_HASH_COST": "low",
            "CLEAVE_LOG_LEVEL": "DEBUG",
            "CLEAVE_LOG_FORMAT": "json",
            "CLEAVE_JWT_SECRET": JWT_SECRET,
            "CLEAVE_SERVICE_KEY": SERVICE_KEY,
            "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
            "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
    )
    try:
        with ShopClient(url) as shop:
            admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
            assert shop.add_product(admin, "TEA-1", 450).status == 201
            assert shop.restock(admin, "TEA-1", 10).status in (200, 202)
            assert shop.register("ada@example.com", "Ada").status == 201
            token = shop.log_in("ada@example.com")
            me = shop.call("GET", "/api/v1/identity/me", token).body
            orders = {}
            for payment in ("tok_ok", "tok_declined"):
                placed = shop.place_order(token, [("TEA-1", 1)], payment)
                assert placed.status == 202, placed
                orders[placed.body["id"]] = shop.settled(token, placed.body["id"])["status"]
            assert sorted(orders.values()) == ["CANCELLED", "CONFIRMED"]
            yield Journey(url, process, [admin, token], orders, str(me["id"]))
    finally:
        process.close()


def scrape(url: str) -> dict[str, list[Any]]:
    """The samples of /metrics, by family name."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Any], sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def settled_scrape(url: str, within: float = 15.0) -> dict[str, list[Any]]:
    """The metrics once every outbox has drained: an order is terminal before the events it
    set off (to notifications, say) have left their outbox. A record that never leaves keeps
    the backlog up, and the assertions below fail."""
    deadline = time.monotonic() + within
    while True:
        families = scrape(url)
        drained = value(families["cleave_outbox_backlog"], "cleave_outbox_backlog") == 0
        if drained or time.monotonic() > deadline:
            return families
        time.sleep(0.1)


def test_metrics_count_messages_requests_and_what_waits(journey: Journey) -> None:
    families = settled_scrape(journey.url)
    handled = families["cleave_messages_handled"]
    placed = value(
        handled,
        "cleave_messages_handled_total",
        module="ordering",
        message="ordering.PlaceOrder",
        transport="inprocess",
        outcome="handled",
    )
    assert placed >= len(journey.orders)
    captured = value(handled, "cleave_messages_handled_total", message="payments.CapturePayment")
    assert captured >= len(journey.orders)
    latency = families["cleave_message_handling_seconds"]
    assert (
        value(latency, "cleave_message_handling_seconds_count", message="ordering.PlaceOrder")
        == placed
    )
    assert value(latency, "cleave_message_handling_seconds_sum", message="ordering.PlaceOrder") > 0
    # Settled: nothing waits in any outbox, nothing failed for good.
    backlog = families["cleave_outbox_backlog"]
    assert {s.labels["module"] for s in backlog} == {
        "identity",
        "catalog",
        "inventory",
        "ordering",
        "payments",
        "notifications",
    }
    assert value(backlog, "cleave_outbox_backlog") == 0
    assert (
        value(families["cleave_outbox_oldest_age_seconds"], "cleave_outbox_oldest_age_seconds") == 0
    )
    assert value(families["cleave_dead_letters"], "cleave_dead_letters") == 0
    assert value(families["cleave_sagas"], "cleave_sagas") == len(journey.orders)
    # The payment provider was called, and answered: its circuit is closed.
    circuit = families["cleave_circuit_state"]
    assert value(circuit, "cleave_circuit_state", target="payment-provider", state="closed") == 1
    requests = families["cleave_http_requests"]
    assert value(
        requests,
        "cleave_http_requests_total",
        method="POST",
        path="/api/v1/orders",
        status_code="202",
    ) == len(journey.orders)


def log_lines(journey: Journey) -> list[dict[str, Any]]:
    text = journey.process.log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return parsed


def test_each_handled_message_and_request_logs_one_json_line(journey: Journey) -> None:
    lines = log_lines(journey)
    placed = [line for line in lines if line.get("message") == "ordering.PlaceOrder"]
    assert len(placed) == len(journey.orders)
    for line in placed:
        assert line["level"] == "info"
        assert line["module"] == "ordering"
        assert line["outcome"] == "handled"
        assert line["transport"] == "inprocess"
        assert line["user_id"] == journey.customer_id
        assert re.fullmatch(r"[0-9a-f-]{16,}", line["message_id"])
        assert line["correlation_id"]
        assert line["duration_ms"] >= 0
    # Every step of the saga shares the order's correlation id.
    correlations = {line["correlation_id"] for line in placed}
    captures = [line for line in lines if line.get("message") == "payments.CapturePayment"]
    assert {line["correlation_id"] for line in captures} == correlations
    orders = [
        line for line in lines if line.get("route") == "/api/v1/orders" and line["method"] == "POST"
    ]
    assert [line["status"] for line in orders] == [202, 202]
    assert {line["user_id"] for line in orders} == {journey.customer_id}
    assert all(line["duration_ms"] >= 0 for line in orders)
    # The framework's own lines come out in the same format.
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)


def test_no_secret_reaches_the_logs(journey: Journey) -> None:
    text = journey.process.log.read_text(errors="replace")
    assert "ordering.PlaceOrder" in text  # the logs were captured, at DEBUG
    secrets = [
        PASSWORD,
        ADMIN_PASSWORD,
        JWT_SECRET,
        SERVICE_KEY,
        "tok_ok",
        "tok_declined",
        *journey.tokens,
    ]
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}... appears in the logs"

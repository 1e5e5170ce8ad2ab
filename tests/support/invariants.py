"""What must hold of the shop after any run, whatever failed on the way.

Every accepted order is terminal; a confirmed order was charged exactly once at the provider
and the others not at all; nothing stays reserved; what is on hand is what was restocked
minus what confirmed orders bought.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}


def check_shop(
    orders: Mapping[str, Mapping[str, Any]],
    charges: list[Mapping[str, Any]],
    stock: Mapping[str, Mapping[str, Any]],
    restocked: Mapping[str, int],
) -> Counter[str]:
    """Assert the invariants; the count of orders by status, for the test's report."""
    pending = [order_id for order_id, order in orders.items() if order["status"] not in TERMINAL]
    assert not pending, f"{len(pending)} orders are not terminal: {pending[:5]}"

    captured = Counter(c["reference"] for c in charges if c["status"] == "captured")
    for order_id, order in orders.items():
        expected = 1 if order["status"] == "CONFIRMED" else 0
        assert captured[order_id] == expected, (order_id, order["status"], captured[order_id])
    unknown = set(captured) - set(orders)
    assert not unknown, f"charges for orders nobody placed: {sorted(unknown)[:5]}"

    sold: Counter[str] = Counter()
    for order in orders.values():
        if order["status"] == "CONFIRMED":
            for line in order["lines"]:
                sold[line["sku"]] += line["quantity"]
    for sku, initial in restocked.items():
        level = stock[sku]
        assert level["reserved"] == 0, level
        assert level["on_hand"] == level["available"] == initial - sold[sku], (level, sold[sku])
    return Counter(order["status"] for order in orders.values())

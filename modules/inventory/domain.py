"""Inventory's rules, in plain Python: stock per SKU and reservations per order."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modules.inventory.contracts import MAX_ON_HAND


class StockLimitExceeded(Exception):
    def __init__(self, sku: str, on_hand: int, quantity: int) -> None:
        super().__init__(
            f"{sku}: {on_hand} on hand and {quantity} more would pass the limit of "
            f"{MAX_ON_HAND} units"
        )


class InsufficientStock(Exception):
    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: {wanted} wanted, {available} available")
        self.sku = sku


@dataclass
class Stock:
    """The stock of one SKU. ``on_hand = available + reserved``; nothing below zero."""

    sku: str
    on_hand: int = 0
    reserved: int = 0
    version: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def restock(self, quantity: int) -> None:
        if quantity < 1:
            raise ValueError("restock needs a positive quantity")
        if self.on_hand + quantity > MAX_ON_HAND:
            raise StockLimitExceeded(self.sku, self.on_hand, quantity)
        self.on_hand += quantity

    def reserve(self, quantity: int) -> None:
        if quantity > self.available:
            raise InsufficientStock(self.sku, quantity, self.available)
        self.reserved += quantity

    def release(self, quantity: int) -> None:
        if quantity > self.reserved:
            raise ValueError(f"{self.sku}: cannot release {quantity} of {self.reserved} reserved")
        self.reserved -= quantity

    def sell(self, quantity: int) -> None:
        if quantity > self.reserved:
            raise ValueError(f"{self.sku}: cannot sell {quantity} of {self.reserved} reserved")
        self.reserved -= quantity
        self.on_hand -= quantity


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    FAILED = "FAILED"
    RELEASED = "RELEASED"
    SOLD = "SOLD"


@dataclass
class Reservation:
    """What an order holds. A reservation is settled once: sold or released."""

    order_id: str
    status: ReservationStatus
    lines: dict[str, int] = field(default_factory=dict)
    failure: str | None = None
    failed_sku: str | None = None


def merge_lines(lines: list[tuple[str, int]]) -> dict[str, int]:
    """One quantity per SKU, in SKU order (a fixed lock order avoids deadlocks)."""
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        merged[sku] = merged.get(sku, 0) + quantity
    return dict(sorted(merged.items()))


def reserve_all(stocks: dict[str, Stock], wanted: dict[str, int]) -> None:
    """Reserve every line or none; raises ``InsufficientStock`` naming the first short SKU."""
    for sku, quantity in wanted.items():
        stock = stocks.get(sku)
        if stock is None or quantity > stock.available:
            raise InsufficientStock(sku, quantity, 0 if stock is None else stock.available)
    for sku, quantity in wanted.items():
        stocks[sku].reserve(quantity)

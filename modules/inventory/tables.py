"""Inventory's tables."""

from sqlalchemy import BigInteger, CheckConstraint, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

stock = Table(
    "inventory_stock",
    metadata,
    Column("sku", String(64), primary_key=True),
    # 64 bits: a warehouse may count past 2**31 units (screws, grams); the domain's
    # MAX_ON_HAND keeps every count far below the column's limit.
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("reserved >= 0 AND on_hand >= reserved", name="inventory_stock_invariant"),
)

reservations = Table(
    "inventory_reservations",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("lines", Text, nullable=False),
    Column("failure", String(32), nullable=True),
    Column("failed_sku", String(64), nullable=True),
)

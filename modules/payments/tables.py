"""Payments' tables."""

from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table, Text, text

metadata = MetaData()

charges = Table(
    "payments_charges",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_charge_id", String(64), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("payments_charges_order", "order_id", "created_at"),
    # At most one settled (not FAILED) charge per order: two handlers that raced past the
    # read both reach the insert, and the loser reruns and finds the winner's answer.
    Index(
        "payments_charges_settled",
        "order_id",
        unique=True,
        sqlite_where=text("status <> 'FAILED'"),
        postgresql_where=text("status <> 'FAILED'"),
    ),
)

"""Notifications' table."""

from sqlalchemy import Column, Float, Index, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

notifications = Table(
    "notifications_notifications",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("recipient_id", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("about", String(200), nullable=False),
    Column("order_id", String(64), nullable=True),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # One notification per fact, however often the fact is told.
    UniqueConstraint("kind", "about", name="uq_notifications_fact"),
    Index("ix_notifications_recipient", "recipient_id", "created_at"),
)

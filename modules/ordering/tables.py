"""Ordering's tables: the orders customers see, their lines, the sagas that settle them, and
the idempotency keys customers placed them with."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

orders = Table(
    "ordering_orders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("total_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_ordering_orders_customer", "customer_id", "created_at"),
)

order_lines = Table(
    "ordering_order_lines",
    metadata,
    Column("order_id", String(64), ForeignKey("ordering_orders.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    # The catalog's version of the product at that price (ADR 0018).
    Column("catalog_version", Integer, nullable=False, server_default="0"),
)

sagas = Table(
    "ordering_sagas",
    metadata,
    Column("order_id", String(64), ForeignKey("ordering_orders.id"), primary_key=True),
    Column("step", String(24), nullable=False),
    Column("reason", Text, nullable=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # Empty once the saga cannot ask for a capture any more: a token is kept no longer than
    # it may be used.
    Column("payment_token", String(200), nullable=False),
    Column("deadline", Float, nullable=False),
    Column("stock_returned", Boolean, nullable=False),
    Column("void_pending", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    # When the order was placed and, as JSON {sku: catalog version}, what it was priced at:
    # checked before the payment is asked for (ADR 0018).
    Column("placed_at", Float, nullable=False, server_default="0"),
    Column("priced", Text, nullable=False, server_default=""),
    # ExpireOrders looks for waiting sagas past their deadline.
    Index("ix_ordering_sagas_due", "step", "deadline"),
)

idempotency_keys = Table(
    "ordering_idempotency_keys",
    metadata,
    # The key is the customer's: two customers may well pick the same one.
    Column("customer_id", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    #: A digest of the order as sent, to tell a retry from another order under the same key.
    Column("fingerprint", String(64), nullable=False),
    Column("order_id", String(64), ForeignKey("ordering_orders.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    # ForgetIdempotencyKeys deletes the oldest.
    Index("ix_ordering_idempotency_keys_created", "created_at"),
)

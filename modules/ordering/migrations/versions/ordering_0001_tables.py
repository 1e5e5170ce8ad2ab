"""Ordering's tables as they were when migrations began.

Revision ID: ordering_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ordering_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ordering_orders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ordering_orders_customer",
        "ordering_orders",
        ["customer_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "ordering_order_lines",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["ordering_orders.id"],
        ),
        sa.PrimaryKeyConstraint("order_id", "position"),
    )
    op.create_table(
        "ordering_sagas",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_token", sa.String(length=200), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("stock_returned", sa.Boolean(), nullable=False),
        sa.Column("void_pending", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["ordering_orders.id"],
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_ordering_sagas_due", "ordering_sagas", ["step", "deadline"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ordering_sagas_due", table_name="ordering_sagas")
    op.drop_table("ordering_sagas")
    op.drop_table("ordering_order_lines")
    op.drop_index("ix_ordering_orders_customer", table_name="ordering_orders")
    op.drop_table("ordering_orders")

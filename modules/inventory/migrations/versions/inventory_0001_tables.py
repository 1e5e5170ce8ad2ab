"""Inventory's tables as they were when migrations began.

Revision ID: inventory_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_reservations",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("failure", sa.String(length=32), nullable=True),
        sa.Column("failed_sku", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "inventory_stock",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "reserved >= 0 AND on_hand >= reserved", name="inventory_stock_invariant"
        ),
        sa.PrimaryKeyConstraint("sku"),
    )


def downgrade() -> None:
    op.drop_table("inventory_stock")
    op.drop_table("inventory_reservations")

"""The idempotency keys customers place orders with.

Revision ID: ordering_0002
Revises: ordering_0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ordering_0002"
down_revision: str | None = "ordering_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ordering_idempotency_keys",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["ordering_orders.id"]),
        sa.PrimaryKeyConstraint("customer_id", "key"),
    )
    op.create_index(
        "ix_ordering_idempotency_keys_created", "ordering_idempotency_keys", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_ordering_idempotency_keys_created", table_name="ordering_idempotency_keys")
    op.drop_table("ordering_idempotency_keys")

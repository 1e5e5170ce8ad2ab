"""Payments's tables as they were when migrations began.

Revision ID: payments_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "payments_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payments_charges",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_charge_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "payments_charges_order", "payments_charges", ["order_id", "created_at"], unique=False
    )
    op.create_index(
        "payments_charges_settled",
        "payments_charges",
        ["order_id"],
        unique=True,
        sqlite_where=sa.text("status <> 'FAILED'"),
        postgresql_where=sa.text("status <> 'FAILED'"),
    )


def downgrade() -> None:
    op.drop_index(
        "payments_charges_settled",
        table_name="payments_charges",
        sqlite_where=sa.text("status <> 'FAILED'"),
        postgresql_where=sa.text("status <> 'FAILED'"),
    )
    op.drop_index("payments_charges_order", table_name="payments_charges")
    op.drop_table("payments_charges")

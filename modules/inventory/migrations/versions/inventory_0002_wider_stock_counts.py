"""Stock counts in 64 bits: restocking past 2**31 units overflowed on PostgreSQL.

Revision ID: inventory_0002
Revises: inventory_0001
Create Date: 2026-11-30

On PostgreSQL the columns change type in place (the table is rewritten under its lock);
SQLite stores 64-bit integers already and only the declared type changes (batch mode copies
the table, its CHECK constraint included).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0002"
down_revision: str | None = "inventory_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("on_hand", "reserved")


def upgrade() -> None:
    with op.batch_alter_table("inventory_stock") as batch:
        for column in COUNTS:
            batch.alter_column(
                column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
            )


def downgrade() -> None:
    with op.batch_alter_table("inventory_stock") as batch:
        for column in COUNTS:
            batch.alter_column(
                column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
            )

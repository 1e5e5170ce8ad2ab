"""Orders record the catalog's version of what they were priced at (ADR 0018).

Revision ID: ordering_0004
Revises: ordering_0003
Create Date: 2026-11-30

Each order line keeps the catalog's version of its product; each saga keeps when its order
was placed and those versions, which it checks before it asks for the payment. Rows written
before have version 0 and an empty ``priced``: their sagas check nothing, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ordering_0004"
down_revision: str | None = "ordering_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ordering_order_lines",
        sa.Column("catalog_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "ordering_sagas", sa.Column("placed_at", sa.Float(), nullable=False, server_default="0")
    )
    op.add_column(
        "ordering_sagas", sa.Column("priced", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("ordering_sagas") as batch:
        batch.drop_column("priced")
        batch.drop_column("placed_at")
    with op.batch_alter_table("ordering_order_lines") as batch:
        batch.drop_column("catalog_version")

"""The outbox, inbox, dead-letter and timer tables of one module (named after it).

Applied once per module: ``messaging_module()`` names the module being migrated.

Revision ID: messaging_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from adapters.sqlalchemy.migrations import messaging_module

revision: str = "messaging_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    module = messaging_module()
    op.create_table(
        f"{module}_dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.String(length=200), nullable=True),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        f"{module}_inbox",
        sa.Column("handler", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("handled_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("handler", "message_id"),
    )
    op.create_table(
        f"{module}_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.String(length=200), nullable=True),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        f"ix_{module}_outbox_due", f"{module}_outbox", ["next_attempt_at"], unique=False
    )
    op.create_index(
        f"ix_{module}_outbox_partition",
        f"{module}_outbox",
        ["target", "partition", "id"],
        unique=False,
    )
    op.create_table(
        f"{module}_timers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("next_run_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    module = messaging_module()
    op.drop_table(f"{module}_timers")
    op.drop_index(f"ix_{module}_outbox_partition", table_name=f"{module}_outbox")
    op.drop_index(f"ix_{module}_outbox_due", table_name=f"{module}_outbox")
    op.drop_table(f"{module}_outbox")
    op.drop_table(f"{module}_inbox")
    op.drop_table(f"{module}_dead_letters")

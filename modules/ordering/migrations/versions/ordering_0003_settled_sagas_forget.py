"""Settled sagas forget the card token, and reasons drop what the provider said (issue 11,
items 8 and 14).

Revision ID: ordering_0003
Revises: ordering_0002
Create Date: 2026-11-30

Data only, and what the code now does for every new order: a saga past the steps that may
capture keeps an empty token, and an order (or saga) cancelled for its payment keeps the
plain code ("payment_failed") without the provider's words after it ("payment_failed: the
provider did not answer within 2.0s (3 attempts)"); those stay in payments' charges, which
admins read. What is cleared cannot come back: the downgrade leaves the rows as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ordering_0003"
down_revision: str | None = "ordering_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The steps in which a saga may still ask for a capture (``domain.PAYING`` when written).
PAYING = ("AWAITING_STOCK", "AWAITING_PAYMENT")
#: The reasons that were followed by the provider's words.
PAYMENT_REASONS = ("payment_declined", "payment_failed")

orders = sa.table("ordering_orders", sa.column("reason", sa.Text()))
sagas = sa.table(
    "ordering_sagas",
    sa.column("step", sa.String()),
    sa.column("payment_token", sa.String()),
    sa.column("reason", sa.Text()),
)


def upgrade() -> None:
    op.execute(
        sagas.update()
        .where(sagas.c.step.not_in(PAYING), sagas.c.payment_token != "")
        .values(payment_token="")
    )
    for table in (orders, sagas):
        for code in PAYMENT_REASONS:
            op.execute(
                table.update()
                .where(table.c.reason.startswith(f"{code}:", autoescape=True))
                .values(reason=code)
            )


def downgrade() -> None:
    pass  # forgotten tokens and words are not restored

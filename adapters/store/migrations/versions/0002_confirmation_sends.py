"""confirmation sends: at most one confirmation mail per address per day

Revision ID: 0002_confirmation_sends
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_confirmation_sends"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "confirmation_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmation_sends")),
        sa.UniqueConstraint("email_key", "day", name=op.f("uq_confirmation_sends_email_key_day")),
    )


def downgrade() -> None:
    op.drop_table("confirmation_sends")

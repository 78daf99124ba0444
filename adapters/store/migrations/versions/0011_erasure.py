"""erased_subjects (keyed hashes of erased addresses) and delivery_blocks (complaints and hard
bounces per address, for transactional checks)

Revision ID: 0011_erasure
Revises: 0009_clamp_future_times

delivery_blocks is filled once from the stored complaint and bounce events (a scan of the
events table: run ``db upgrade`` in a quiet hour on a large store).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_erasure"
down_revision: str | Sequence[str] | None = "0009_clamp_future_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_subjects",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_erased_subjects")),
    )
    op.create_table(
        "delivery_blocks",
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_key", "kind", name=op.f("pk_delivery_blocks")),
    )
    op.execute(
        "INSERT INTO delivery_blocks (email_key, kind, first_at, last_at) "
        "SELECT email_key, kind, min(received_at), max(received_at) FROM events "
        "WHERE kind IN ('complaint', 'bounce') GROUP BY email_key, kind"
    )


def downgrade() -> None:
    op.drop_table("delivery_blocks")
    op.drop_table("erased_subjects")

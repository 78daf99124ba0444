"""recipient counts: addresses issued a token per campaign and per topic, for the dashboard

Revision ID: 0005_recipient_counts
Revises: 0004_confirmation_queue

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_recipient_counts"
down_revision: str | Sequence[str] | None = "0004_confirmation_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recipient_counts",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("addresses", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_recipient_counts")),
        sqlite_with_rowid=False,
    )
    # The recipients issued before this revision.
    for kind in ("campaign", "topic"):
        op.execute(
            f"INSERT INTO recipient_counts (kind, name, addresses) "
            f"SELECT '{kind}', {kind}, count(DISTINCT email_key) FROM recipients WHERE {kind} != '' GROUP BY {kind}"
        )


def downgrade() -> None:
    op.drop_table("recipient_counts")

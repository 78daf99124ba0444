"""event counts: events per UTC day, source, kind and reason, for the dashboard

Revision ID: 0003_event_counts
Revises: 0002_confirmation_sends

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_event_counts"
down_revision: str | Sequence[str] | None = "0002_confirmation_sends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "source", "kind", "reason", name=op.f("pk_event_counts")),
        sqlite_with_rowid=False,
    )
    # The events stored before this revision (SQLite keeps times as UTC text).
    postgres = op.get_bind().dialect.name == "postgresql"
    day = "to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if postgres else "substr(received_at, 1, 10)"
    reason = "substr(coalesce(reason, ''), 1, 200)"
    op.execute(
        f"INSERT INTO event_counts (day, source, kind, reason, n) "
        f"SELECT {day}, source, kind, {reason}, count(*) FROM events GROUP BY {day}, source, kind, {reason}"
    )


def downgrade() -> None:
    op.drop_table("event_counts")

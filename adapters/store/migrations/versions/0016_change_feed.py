"""The change feed and outbound webhook deliveries

Revision ID: 0016_change_feed
Revises: 0011_erasure

New tables (README "Change feed and outbound webhooks"); nothing existing is rewritten.
``change_sequence`` holds one row, the last change's number.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_change_feed"
down_revision: str | Sequence[str] | None = "0011_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    sequence = op.create_table(
        "change_sequence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_sequence")),
    )
    op.bulk_insert(sequence, [{"id": 1, "last": 0}])
    op.create_table(
        "changes",
        sa.Column("id", Id, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_changes_event_id_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("seq", name=op.f("uq_changes_seq")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Id, nullable=False),
        sa.Column("change_id", Id, nullable=False),
        sa.Column("subscriber", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Time, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("done_at", Time, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["change_id"], ["changes.id"], name=op.f("fk_webhook_deliveries_change_id_changes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_state_next_attempt_at", "webhook_deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("changes")
    op.drop_table("change_sequence")

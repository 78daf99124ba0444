"""confirmation queue: confirmations are claimed with the opt-out and sent by the worker

Revision ID: 0004_confirmation_queue
Revises: 0003_event_counts

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_confirmation_queue"
down_revision: str | Sequence[str] | None = "0003_event_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Rows from before were sent at once: they become "sent", queued and attempted then.
    with op.batch_alter_table("confirmation_sends") as batch:
        batch.add_column(sa.Column("email", sa.String(length=254), nullable=False, server_default=""))
        batch.add_column(sa.Column("scope", sa.String(length=100), nullable=False, server_default="global"))
        batch.add_column(sa.Column("campaign", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("lang", sa.String(length=16), nullable=False, server_default="en"))
        batch.add_column(sa.Column("state", sa.String(length=16), nullable=False, server_default="sent"))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("queued_at", TIME, nullable=True))
        batch.add_column(sa.Column("next_attempt_at", TIME, nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.alter_column("sent_at", existing_type=TIME, nullable=True)
    op.execute("UPDATE confirmation_sends SET email = email_key, queued_at = sent_at, next_attempt_at = sent_at")
    with op.batch_alter_table("confirmation_sends") as batch:
        batch.alter_column("queued_at", existing_type=TIME, nullable=False)
        batch.alter_column("next_attempt_at", existing_type=TIME, nullable=False)
        batch.create_index("ix_confirmation_sends_state_next_attempt_at", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM confirmation_sends WHERE state <> 'sent'")
    with op.batch_alter_table("confirmation_sends") as batch:
        batch.drop_index("ix_confirmation_sends_state_next_attempt_at")
        batch.alter_column("sent_at", existing_type=TIME, nullable=False)
        for column in (
            "last_error",
            "next_attempt_at",
            "queued_at",
            "attempts",
            "state",
            "lang",
            "campaign",
            "scope",
            "email",
        ):
            batch.drop_column(column)

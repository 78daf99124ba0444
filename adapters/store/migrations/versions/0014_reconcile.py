"""reconcile_checkpoints and reconcile_snapshots (README "Reconciliation")

Revision ID: 0014_reconcile
Revises: 0013_constant_contact

Where each provider's pull stands (the last successful pull, and the resume point of one in
progress), and the last full read of each provider list that has no time filter (SendGrid
unsubscribe groups), whose difference on the next read finds additions and removals. Two new
tables: nothing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reconcile"
down_revision: str | Sequence[str] | None = "0013_constant_contact"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_checkpoints",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "kind", name=op.f("pk_reconcile_checkpoints")),
    )
    op.create_table(
        "reconcile_snapshots",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("provider", "name", "email_key", name=op.f("pk_reconcile_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("reconcile_snapshots")
    op.drop_table("reconcile_checkpoints")

"""push_confirmations: settled pushes moved out of the outbox

Revision ID: 0015_outbox_compaction
Revises: 0016_change_feed

Once a push has settled, the worker moves its outbox row to push_confirmations in bounded
batches (README "Push-back to providers"), keeping per event and provider what the audit
reports (attempts, queued and confirmed times, last status and answer) and the receipt time
the dashboard's latency needs, without the address, scope or lease. The outbox keeps only
work still pending or dead. Creating an empty table rewrites nothing; rows already done are
moved by the worker afterwards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_outbox_compaction"
down_revision: str | Sequence[str] | None = "0016_change_feed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (
    "id",
    "event_id",
    "provider",
    "attempts",
    "received_at",
    "created_at",
    "done_at",
    "last_status",
    "last_error",
)


def upgrade() -> None:
    op.create_table(
        "push_confirmations",
        sa.Column("id", BigId, autoincrement=False, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_confirmations")),
    )
    op.create_index(op.f("ix_push_confirmations_event_id"), "push_confirmations", ["event_id"], unique=False)


def downgrade() -> None:
    """Put the moved rows back in the outbox (address and scope from their event), then drop."""
    names = ", ".join(COLUMNS)
    op.execute(
        f"INSERT INTO outbox ({names}, action, email, scope, state, due_at) "
        f"SELECT {', '.join('p.' + c for c in COLUMNS)}, "
        "CASE WHEN e.kind = 'resubscribe' THEN 'resubscribe' ELSE 'unsubscribe' END, "
        "e.email, e.scope, 'done', p.done_at "
        "FROM push_confirmations p JOIN events e ON e.id = p.event_id"
    )
    op.drop_index(op.f("ix_push_confirmations_event_id"), table_name="push_confirmations")
    op.drop_table("push_confirmations")

"""push_confirmations.action and .scope: compacted pushes readable by every reader

Revision ID: 0017_push_action_scope
Revises: 0015_outbox_compaction

The audit shows each push's action and scope, ``report honour`` counts opt-out pushes only,
and reconciliation matches provider, scope and address; a compacted push now keeps its own
action and scope (README "Push-back to providers", Compaction). Its address stays its event's
``email_key`` (erasure renames it there), found through ``events`` and the existing
``ix_push_confirmations_event_id``: reconciliation looks pushes up by address through the
events' own address index, so no index is added.

Backfill of rows compacted before this revision (only where ``[worker] compact`` was turned
on): the scope is the event's, and the action ``resubscribe`` for a resubscribe's push to
any provider other than the one it came from, else ``unsubscribe`` (a push of a resubscribe
back to its own provider is the opt-out pushed back; an opt-out only queues opt-outs). That
is exactly what the fold wrote, except for the rows a lifted global opt-out queued at each
topic (the topic's scope and its own state): those read as the global resubscribe. Adding
the columns rewrites the table on SQLite (batch mode); on PostgreSQL the UPDATE does.

Downgrade drops both columns (0015's downgrade derives them from the event again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_push_action_scope"
down_revision: str | Sequence[str] | None = "0015_outbox_compaction"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE push_confirmations SET
  scope = (SELECT e.scope FROM events e WHERE e.id = push_confirmations.event_id),
  action = CASE WHEN EXISTS (
    SELECT 1 FROM events e
    WHERE e.id = push_confirmations.event_id
      AND e.kind = 'resubscribe'
      AND e.source <> push_confirmations.provider
  ) THEN 'resubscribe' ELSE 'unsubscribe' END
"""


def upgrade() -> None:
    op.add_column("push_confirmations", sa.Column("action", sa.String(length=16), nullable=True))
    op.add_column("push_confirmations", sa.Column("scope", sa.String(length=100), nullable=True))
    op.execute(BACKFILL)
    with op.batch_alter_table("push_confirmations") as batch_op:
        batch_op.alter_column("action", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("scope", existing_type=sa.String(length=100), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("push_confirmations") as batch_op:
        batch_op.drop_column("scope")
        batch_op.drop_column("action")

"""evidence.decided_by and outbox.retried_by: the admin who decided a review item or retried a row;
ix_events_received_at for the rate reports over a date range

Revision ID: 0012_admin_names
Revises: 0008_consent_provenance

Every admin action records the admin's name (README "Recipients' pages and the admin
dashboard"): a review decision on its evidence row, a retry of a dead outbox row on that row
(the events an admin records carry the name in their ``meta``). Rows decided or retried
before this revision have none (NULL). Adding nullable columns rewrites nothing. The rate
reports (README "Analytics") read the events of a date range through ``ix_events_received_at``
(on a large PostgreSQL table, build it first with ``CREATE INDEX CONCURRENTLY`` under the same
name; this revision then leaves it as it is).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_admin_names"
down_revision: str | Sequence[str] | None = "0008_consent_provenance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("evidence", sa.Column("decided_by", sa.String(length=200), nullable=True))
    op.add_column("outbox", sa.Column("retried_by", sa.String(length=200), nullable=True))
    op.add_column("outbox", sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_events_received_at"), "events", ["received_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_received_at"), table_name="events")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("retried_at")
        batch_op.drop_column("retried_by")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_column("decided_by")

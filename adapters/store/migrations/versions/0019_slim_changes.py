"""changes keep only what their event does not hold: seq (the key), event_id, suppressed, recorded_at

Revision ID: 0019_slim_changes
Revises: 0018_outbox_ids_not_reused

A change's address, scope, kind, source and actor were copies of its event's, and its
``occurred_at`` the event's effective time: the feed now reads them through the event, and
``seq`` becomes the primary key (on SQLite the rowid), so each change costs one B-tree
insert of about a third of the bytes in the recording transaction (README "Change feed and
outbound webhooks"). ``webhook_deliveries.change_id`` now holds the change's ``seq``.

The table is rebuilt: the old one is renamed aside (on PostgreSQL with its key's and unique
index's names, which are global there), the new one filled from it, the deliveries pointed
at ``seq``, the old one dropped. Downgrade rebuilds the wide table from the events, with
``id`` equal to ``seq`` so that the deliveries keep pointing at their change.
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0019_slim_changes"
down_revision: str | Sequence[str] | None = "0018_outbox_ids_not_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MAX_CLOCK_SKEW = timedelta(minutes=5)  # adapters.consent.MAX_CLOCK_SKEW when this was written
DELIVERY_FK = "fk_webhook_deliveries_change_id_changes"


def _set_aside(name: str, indexed: Sequence[str]) -> None:
    """Rename ``changes`` to ``name``; on PostgreSQL also its key and unique indexes, whose
    names the new table takes."""
    if op.get_bind().dialect.name == "postgresql":
        for constraint in indexed:
            op.execute(f"ALTER TABLE changes RENAME CONSTRAINT {constraint} TO {constraint}_{name}")
    op.rename_table("changes", name)


def _point_deliveries(old: str, key: str) -> None:
    """Deliveries reference the new table's ``key`` instead of ``old``'s, then ``old`` goes.
    Upgrading, each delivery's ``change_id`` (the old ``id``) becomes its change's ``seq``;
    downgrading keeps it (the wide table's ``id`` is the ``seq``)."""
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_constraint(DELIVERY_FK, type_="foreignkey")
    if key == "seq":
        op.execute(
            f"UPDATE webhook_deliveries SET change_id = "
            f"(SELECT seq FROM {old} WHERE {old}.id = webhook_deliveries.change_id)"
        )
    op.drop_table(old)
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.create_foreign_key(DELIVERY_FK, "changes", ["change_id"], [key])


def upgrade() -> None:
    _set_aside("changes_wide", ("pk_changes", "uq_changes_seq"))
    op.create_table(
        "changes",
        sa.Column("seq", Id, nullable=False, autoincrement=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_changes_event_id_events")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_changes")),
    )
    op.execute(
        "INSERT INTO changes (seq, event_id, suppressed, recorded_at) "
        "SELECT seq, event_id, suppressed, recorded_at FROM changes_wide"
    )
    _point_deliveries("changes_wide", "seq")


def downgrade() -> None:
    _set_aside("changes_slim", ("pk_changes",))
    wide = op.create_table(
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
    slim = sa.table(
        "changes_slim",
        sa.column("seq", Id),
        sa.column("event_id", Id),
        sa.column("suppressed", sa.Boolean()),
        sa.column("recorded_at", Time),
    )
    events = sa.table(
        "events",
        *(sa.column(name, sa.String()) for name in ("email", "scope", "kind", "source", "actor")),
        sa.column("id", Id),
        sa.column("occurred_at", Time),
        sa.column("received_at", Time),
    )
    rows = op.get_bind().execute(
        sa.select(slim, *(events.c[n] for n in ("email", "scope", "kind", "source", "actor", "occurred_at")))
        .add_columns(events.c.received_at)
        .join_from(slim, events, events.c.id == slim.c.event_id)
    )
    op.bulk_insert(
        wide,
        [
            {
                "id": r.seq,
                "seq": r.seq,
                "event_id": r.event_id,
                "email": r.email,
                "scope": r.scope,
                "suppressed": r.suppressed,
                "kind": r.kind,
                "source": r.source,
                "actor": r.actor,
                "occurred_at": min(r.occurred_at, r.received_at + MAX_CLOCK_SKEW),  # the effective time
                "recorded_at": r.recorded_at,
            }
            for r in rows
        ],
    )
    _point_deliveries("changes_slim", "id")

"""suppressions.last_at re-clamped: no state keeps a time beyond its events' receipt + skew

Revision ID: 0009_clamp_future_times
Revises: 0014_reconcile

The consent model (README "Consent") orders an address's events by their effective time:
when the event says it occurred, but never more than 5 minutes after the hub received it.
States stored before that clamp may keep the occurrence time of an event dated in the future
(a provider's clock, a forged date) as ``last_at``, and so ignore every real request until that
date comes round. This revision recomputes ``last_at`` of each such state (``last_at`` still in
the future when it runs) from the events of its address and scope: the latest effective time
among the events of the state's kind (opt-outs for a suppressed state, resubscribes for a
lifted one), never later than it was; ``first_at`` is kept no later than ``last_at``. Events
are not touched: their stored times are the evidence. Only the rows concerned are read, by the
``last_at`` index, so it is quick on any store; there is nothing to undo on downgrade.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0009_clamp_future_times"
down_revision: str | Sequence[str] | None = "0014_reconcile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_CLOCK_SKEW = timedelta(minutes=5)  # adapters.consent.MAX_CLOCK_SKEW when this was written
RESUBSCRIBE = "resubscribe"

suppressions = sa.table(
    "suppressions",
    sa.column("email_key", sa.String),
    sa.column("scope", sa.String),
    sa.column("suppressed", sa.Boolean),
    sa.column("first_at", sa.DateTime(timezone=True)),
    sa.column("last_at", sa.DateTime(timezone=True)),
)
events = sa.table(
    "events",
    sa.column("email_key", sa.String),
    sa.column("scope", sa.String),
    sa.column("kind", sa.String),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("received_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"

    def stored(value: datetime) -> datetime:  # SQLite keeps naive UTC (models.UTCDateTime)
        return value.replace(tzinfo=None) if sqlite else value

    def read(value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    now = datetime.now(UTC)
    frozen = bind.execute(
        sa.select(suppressions.c.email_key, suppressions.c.scope, suppressions.c.suppressed, suppressions.c.first_at)
        .add_columns(suppressions.c.last_at)
        .where(suppressions.c.last_at > stored(now))
    ).all()
    for email_key, scope, suppressed, first_at, last_at in frozen:
        kind = events.c.kind != RESUBSCRIBE if suppressed else events.c.kind == RESUBSCRIBE
        times = bind.execute(
            sa.select(events.c.occurred_at, events.c.received_at).where(
                events.c.email_key == email_key, events.c.scope == scope, kind
            )
        ).all()
        effective = [min(read(occurred), read(received) + MAX_CLOCK_SKEW) for occurred, received in times]
        clamped = min(read(last_at), max(effective, default=now))
        bind.execute(
            sa.update(suppressions)
            .where(suppressions.c.email_key == email_key, suppressions.c.scope == scope)
            .values(last_at=stored(clamped), first_at=stored(min(read(first_at), clamped)))
        )


def downgrade() -> None:
    pass  # the clamped times are the right ones under either schema

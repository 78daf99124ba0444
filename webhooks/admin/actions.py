"""The dashboard's admin actions: who approved or rejected a review item, retried a dead
outbox row, or recorded an opt-out or resubscribe through the API, newest first (README
"Recipients' pages and the admin dashboard": named admins)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from adapters.events import Actor, Source
from adapters.store.models import Event, Evidence, OutboxRow


@dataclasses.dataclass(frozen=True)
class AdminAction:
    at: datetime
    admin: str
    action: str  # approved | rejected | retried | an event kind recorded through the API
    email: str | None
    detail: str  # what was acted on: "review #12", "outbox #3 sendgrid", the scope


def recent_actions(session: Session, *, limit: int = 50) -> Sequence[AdminAction]:
    decided = (
        select(Evidence.processed_at, Evidence.decided_by, Evidence.state, Event.email, Evidence.id)
        .outerjoin(Event, and_(Event.evidence_id == Evidence.id, Event.source == Source.SMTP.value))
        .where(Evidence.decided_by.is_not(None))
        .order_by(Evidence.processed_at.desc())
        .limit(limit)
    )
    retried = (
        select(OutboxRow.retried_at, OutboxRow.retried_by, OutboxRow.email, OutboxRow.id, OutboxRow.provider)
        .where(OutboxRow.retried_by.is_not(None))
        .order_by(OutboxRow.retried_at.desc())
        .limit(limit)
    )
    recorded = (
        select(Event)
        .where(Event.source == Source.API.value, Event.actor == Actor.ADMIN.value)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    actions = [
        AdminAction(at, by, state, email, f"review #{i}") for at, by, state, email, i in session.execute(decided)
    ]
    actions += [
        AdminAction(at, by, "retried", email, f"outbox #{i} {provider}")
        for at, by, email, i, provider in session.execute(retried)
    ]
    actions += [
        AdminAction(e.received_at, str((e.meta or {}).get("admin", "")), e.kind, e.email, e.scope)
        for e in session.scalars(recorded)
    ]
    return sorted(actions, key=lambda a: a.at, reverse=True)[:limit]

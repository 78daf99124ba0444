"""The dashboard's consent conflicts: resubscribes that changed nothing (README "Consent").

A resubscribe that was not proven to come from the person (a CRM user's click, an admin add
or import at a provider, an unnamed API call) is kept as evidence and listed here, newest
first, beside the source of the opt-out it could not lift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.store.models import ConsentConflict, Event


@dataclasses.dataclass(frozen=True)
class Conflict:
    received_at: datetime
    email: str
    scope: str
    source: str
    actor: str | None
    opt_out_source: str


def recent_conflicts(session: Session, *, limit: int = 50) -> Sequence[Conflict]:
    stmt = (
        select(Event.received_at, Event.email, Event.scope, Event.source, Event.actor, ConsentConflict.opt_out_source)
        .join(Event, Event.id == ConsentConflict.event_id)
        .order_by(ConsentConflict.event_id.desc())
        .limit(limit)
    )
    return [Conflict(*row) for row in session.execute(stmt)]

"""Provider events waiting for their contact's address (HubSpot sends contact ids only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from adapters.providers.hubspot import PROVIDER
from adapters.providers.webhook import ContactEvent
from adapters.store.bulk import insert_statement
from adapters.store.models import PendingLookup


def queue_lookups(session: Session, events: Sequence[ContactEvent], *, evidence_id: int, now: datetime) -> None:
    """Keep each event in ``pending_lookups`` until the worker resolves its contact id; a
    retried delivery's events are already there and are skipped."""
    if not events:
        return
    rows = [
        {
            "provider": PROVIDER,
            "object_id": e.object_id,
            "provider_event_id": e.provider_event_id,
            "event": e.to_json(),
            "evidence_id": evidence_id,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for e in events
    ]
    session.execute(
        insert_statement(session, PendingLookup).on_conflict_do_nothing(
            index_elements=["provider", "provider_event_id"]
        ),
        rows,
    )

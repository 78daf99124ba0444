"""Retention of raw evidence (README "Erasure"): ``[retention] evidence_days``.

Purging empties a row's raw content, envelope and classification and marks it ``purged``;
the row stays, so the events it proved keep their link and the dashboard can say the
evidence was purged. Rows still waiting (``pending`` classification, ``review`` by an admin)
are never purged.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapters.store.models import Evidence

PURGEABLE = ("done", "approved", "rejected")
PURGED = "purged"


def purge_evidence_batch(session: Session, *, before: datetime, limit: int) -> int:
    """Purge up to ``limit`` settled evidence rows received before ``before``; how many."""
    ids = (
        select(Evidence.id)
        .where(Evidence.state.in_(PURGEABLE), Evidence.received_at < before)
        .order_by(Evidence.id)
        .limit(limit)
        .scalar_subquery()
    )
    stmt = update(Evidence).where(Evidence.id.in_(ids)).values(content=b"", meta=None, result=None, state=PURGED)
    return session.connection().execute(stmt).rowcount

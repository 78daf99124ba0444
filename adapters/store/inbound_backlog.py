"""The inbound backlog: SMTP messages stored (and answered ``250``) but not yet classified.

The listener commits each message as an ``evidence`` row (``channel="smtp"``,
``state="pending"``) before its ``250``; the classification thread moves it to ``done`` or
``review``. Rows still pending are work owed to a sender who was told the message was taken:
the classifier retries them until they are done, and the age of the oldest one is the
measure of how far behind it is (``optout_inbound_oldest_pending_seconds``, and ``/admin``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.store.models import Evidence

SMTP_CHANNEL = "smtp"
PENDING = "pending"


def pending_evidence_ids(session: Session) -> list[int]:
    """Inbound messages stored but not yet classified, oldest first."""
    stmt = select(Evidence.id).where(Evidence.channel == SMTP_CHANNEL, Evidence.state == PENDING).order_by(Evidence.id)
    return list(session.scalars(stmt))


def oldest_pending_age(session: Session, now: datetime) -> float:
    """Seconds since the oldest unclassified inbound message was received (0 when none is)."""
    stmt = select(func.min(Evidence.received_at)).where(Evidence.channel == SMTP_CHANNEL, Evidence.state == PENDING)
    oldest = session.scalar(stmt)
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

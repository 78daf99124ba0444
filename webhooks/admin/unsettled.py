"""The dashboard's "unsettled opt-outs": every opt-out some provider has not confirmed yet,
oldest first, against the limits the law and the mailbox providers set.

- Gmail and Yahoo bulk-sender rules: an unsubscribe is honoured within 2 days.
- CAN-SPAM: within 10 business days. Business days skip Saturdays and Sundays; public
  holidays are not skipped, so the limit shown is never later than the real one.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from adapters.store.outbox import Unsettled, unsettled_optouts

BULK_SENDER_LIMIT = timedelta(days=2)
CAN_SPAM_BUSINESS_DAYS = 10


def business_days_after(start: datetime, days: int) -> datetime:
    """``start`` moved forward by ``days`` weekdays (Monday to Friday), at the same time of day."""
    moment, left = start, days
    while left:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            left -= 1
    return moment


@dataclasses.dataclass(frozen=True)
class UnsettledOptOut:
    optout: Unsettled
    age: timedelta
    bulk_sender_limit: datetime
    can_spam_limit: datetime
    now: datetime

    @property
    def past_bulk_sender_limit(self) -> bool:
        return self.now >= self.bulk_sender_limit

    @property
    def past_can_spam_limit(self) -> bool:
        return self.now >= self.can_spam_limit

    @property
    def age_text(self) -> str:
        hours = int(self.age.total_seconds() // 3600)
        return (
            f"{hours // 24} d {hours % 24} h"
            if hours >= 24
            else f"{hours} h {int(self.age.total_seconds() // 60) % 60} min"
        )


def unsettled_section(session: Session, *, now: datetime, limit: int = 100) -> list[UnsettledOptOut]:
    return [
        UnsettledOptOut(
            u,
            now - u.received_at,
            u.received_at + BULK_SENDER_LIMIT,
            business_days_after(u.received_at, CAN_SPAM_BUSINESS_DAYS),
            now,
        )
        for u in unsettled_optouts(session, limit=limit)
    ]

"""The dashboard's "unsettled opt-outs": every opt-out some provider has not confirmed yet,
oldest first, against the two limits of :mod:`adapters.compliance.deadlines` (2 days; 10
business days under the configured holidays), each marked once passed."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from adapters.compliance.deadlines import Limits
from adapters.store.outbox import Unsettled, unsettled_optouts


@dataclasses.dataclass(frozen=True)
class UnsettledOptOut:
    optout: Unsettled
    age: timedelta
    bulk_sender_limit: datetime
    can_spam_limit: datetime  # the end of its last business day: 00:00 UTC of the next day
    now: datetime

    @property
    def can_spam_last_day(self) -> date:
        return (self.can_spam_limit - timedelta(days=1)).date()

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


def unsettled_section(session: Session, *, now: datetime, limits: Limits, limit: int = 100) -> list[UnsettledOptOut]:
    return [
        UnsettledOptOut(
            u,
            now - u.received_at,
            limits.bulk_sender_deadline(u.received_at),
            limits.can_spam_deadline(u.received_at),
            now,
        )
        for u in unsettled_optouts(session, limit=limit)
    ]

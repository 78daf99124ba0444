"""The two limits an opt-out must be honoured within (README "Compliance"), as pure functions.

- Gmail's and Yahoo's bulk-sender rules: within 2 days (48 hours) of receipt.
- CAN-SPAM: within 10 business days. The deadline is the end (24:00 UTC) of the 10th business
  day after the UTC day of receipt; business days are Monday to Friday, minus the configured
  ``[compliance] holidays``. A request received on a weekend or holiday counts from that day
  all the same: the next business day is day 1.

A request is past a limit once the clock reaches its deadline.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta

BULK_SENDER_LIMIT = timedelta(days=2)
CAN_SPAM_BUSINESS_DAYS = 10
LIMITS = ("2d", "10bd")  # the labels of the two limits in reports and metrics
_RESOLUTION = timedelta(microseconds=1)  # of stored times, on SQLite and PostgreSQL


def is_business_day(day: date, holidays: Collection[date] = ()) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_business_days(day: date, count: int, holidays: Collection[date] = ()) -> date:
    """The ``count``-th business day after ``day`` (``day`` itself never counts)."""
    left = count
    while left:
        day += timedelta(days=1)
        if is_business_day(day, holidays):
            left -= 1
    return day


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@functools.lru_cache(maxsize=4096)  # a report meets the same few days of receipt again and again
def _can_spam_deadline(day: date, holidays: frozenset[date]) -> datetime:
    return _day_start(add_business_days(day, CAN_SPAM_BUSINESS_DAYS, holidays) + timedelta(days=1))


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits under one holiday calendar."""

    holidays: frozenset[date] = frozenset()

    def bulk_sender_deadline(self, received: datetime) -> datetime:
        return received + BULK_SENDER_LIMIT

    def can_spam_deadline(self, received: datetime) -> datetime:
        """The end of the 10th business day after the UTC day of ``received`` (an instant:
        00:00 UTC of the next calendar day)."""
        return _can_spam_deadline(received.astimezone(UTC).date(), self.holidays)

    def deadlines(self, received: datetime) -> dict[str, datetime]:
        return {"2d": self.bulk_sender_deadline(received), "10bd": self.can_spam_deadline(received)}

    def overdue_before(self, now: datetime) -> dict[str, datetime]:
        """Per limit, the instant before which a request must have been received to be past
        that limit at ``now``: a store query can then count overdue requests with one
        comparison. (The 10-business-day deadline only grows with the day of receipt.)"""
        day = now.astimezone(UTC).date()
        while self.can_spam_deadline(_day_start(day)) > now:
            day -= timedelta(days=1)
        return {"2d": now - BULK_SENDER_LIMIT + _RESOLUTION, "10bd": _day_start(day + timedelta(days=1))}

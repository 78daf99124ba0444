"""Business days and the two limits, checked against a calendar by hand.

November/December 2026: Mon 23, Tue 24, ... Fri 27, Sat 28, Sun 29, Mon 30 Nov; Fri 25 Dec
(holiday in the cases that say so), Fri 1 Jan 2027.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from adapters.compliance.deadlines import Limits, add_business_days, is_business_day

XMAS = date(2026, 12, 25)
NEW_YEAR = date(2027, 1, 1)
NEW_YORK = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("start", "count", "holidays", "expected"),
    [
        (date(2026, 11, 23), 1, (), date(2026, 11, 24)),  # Monday + 1: Tuesday
        (date(2026, 11, 27), 1, (), date(2026, 11, 30)),  # Friday + 1: over the weekend
        (date(2026, 11, 27), 10, (), date(2026, 12, 11)),  # Friday + 10: two weekends later
        (date(2026, 11, 28), 1, (), date(2026, 11, 30)),  # Saturday + 1: Monday
        (date(2026, 11, 29), 10, (), date(2026, 12, 11)),  # Sunday counts from Monday as day 1
        (date(2026, 11, 24), 10, (), date(2026, 12, 8)),  # Tuesday + 10: Tuesday two weeks on
        (date(2026, 12, 18), 10, (), date(2027, 1, 1)),  # no holidays: Christmas counts
        (date(2026, 12, 18), 10, (XMAS, NEW_YEAR), date(2027, 1, 5)),  # both skipped
        (date(2026, 12, 24), 1, (XMAS,), date(2026, 12, 28)),  # Thursday + 1 over Fri holiday + weekend
        (date(2026, 12, 25), 1, (XMAS,), date(2026, 12, 28)),  # from a holiday: next business day
        (date(2026, 12, 26), 0, (XMAS,), date(2026, 12, 26)),  # zero days: the day itself
    ],
)
def test_add_business_days(start: date, count: int, holidays: tuple[date, ...], expected: date) -> None:
    assert add_business_days(start, count, frozenset(holidays)) == expected


def test_business_days_are_weekdays_that_are_not_holidays() -> None:
    assert is_business_day(date(2026, 11, 27)) and not is_business_day(date(2026, 11, 28))
    assert not is_business_day(date(2026, 11, 29)) and is_business_day(XMAS)
    assert not is_business_day(XMAS, {XMAS})


@pytest.mark.parametrize(
    ("received", "holidays", "deadline"),
    [
        # the end (24:00 UTC) of the 10th business day after the UTC day of receipt
        (datetime(2026, 11, 24, 12, 0, tzinfo=UTC), (), datetime(2026, 12, 9, 0, 0, tzinfo=UTC)),
        (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), (), datetime(2026, 12, 9, 0, 0, tzinfo=UTC)),
        (datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC), (), datetime(2026, 12, 9, 0, 0, tzinfo=UTC)),
        (datetime(2026, 11, 28, 9, 0, tzinfo=UTC), (), datetime(2026, 12, 12, 0, 0, tzinfo=UTC)),
        (datetime(2026, 12, 18, 15, 0, tzinfo=UTC), (XMAS, NEW_YEAR), datetime(2027, 1, 6, 0, 0, tzinfo=UTC)),
        # a time in another zone is placed on its UTC day: Tuesday 20:30 in New York is Wednesday UTC
        (datetime(2026, 11, 24, 20, 30, tzinfo=NEW_YORK), (), datetime(2026, 12, 10, 0, 0, tzinfo=UTC)),
    ],
)
def test_can_spam_deadline(received: datetime, holidays: tuple[date, ...], deadline: datetime) -> None:
    assert Limits(frozenset(holidays)).can_spam_deadline(received) == deadline


def test_bulk_sender_deadline_is_48_hours() -> None:
    received = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
    assert Limits().deadlines(received) == {
        "2d": datetime(2026, 11, 29, 18, 30, tzinfo=UTC),
        "10bd": datetime(2026, 12, 12, 0, 0, tzinfo=UTC),
    }


@pytest.mark.parametrize("holidays", [(), (XMAS, NEW_YEAR)])
def test_overdue_before_agrees_with_the_deadlines(holidays: tuple[date, ...]) -> None:
    """A request is counted overdue by the store's one comparison exactly when its deadline
    has passed: checked for receipts every 7 hours over six weeks, at several moments."""
    limits = Limits(frozenset(holidays))
    start = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    for now in (datetime(2027, 1, 6, 0, 0, tzinfo=UTC), datetime(2026, 12, 29, 13, 17, tzinfo=UTC)):
        cutoffs = limits.overdue_before(now)
        received = start
        while received < now:
            for limit, deadline in limits.deadlines(received).items():
                assert (received < cutoffs[limit]) == (now >= deadline), (limit, received, now)
            received += timedelta(hours=7)
    exact = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    cutoffs = limits.overdue_before(exact + timedelta(days=2))
    assert exact < cutoffs["2d"] and exact + timedelta(microseconds=1) >= cutoffs["2d"]

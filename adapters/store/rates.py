"""Unsubscribe counts and rates over a date range, read from the store (README "Analytics").

One table per dimension, which ``optout-hub report rates`` and ``/admin`` both show:

- ``source``, ``kind``, ``reason``: opt-out events (every event, for ``kind``) received in the
  range, from the per-day counters, with each row's share of the total. Reasons are grouped:
  people's (the preference centre's choices and their own words), admins' notes (API),
  imports, and machine reasons (bounce and complaint reports, providers' codes).
- ``topic``: of the addresses issued a token for that topic (by the end of the range), those
  who opted out of it in the range (events read through ``ix_events_received_at``: the cost
  follows the events in the range). Opt-outs of the topic by addresses never issued it are
  counted apart (``outside``), never in the rate.
- ``campaign``: of the addresses issued a token for that campaign, those who unsubscribed and
  those who complained in the range (distinct addresses).

A rate over no recipients is ``None`` (shown "—"), never a percentage. Imports are kept
apart from organic opt-outs in the source table's ``group``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, exists, func, select
from sqlalchemy.orm import Session

from adapters.events import TOPIC_PREFIX, Kind, Source, topic_scope
from adapters.labels import label
from adapters.store.models import Event, EventCount, Recipient, RecipientCount

OPT_OUT_KINDS = (Kind.UNSUBSCRIBE.value, Kind.COMPLAINT.value, Kind.BOUNCE.value)
DIMENSIONS = ("source", "kind", "reason", "topic", "campaign")
COLUMNS: dict[str, tuple[str, ...]] = {
    "source": ("key", "label", "group", "opt_outs", "share"),
    "kind": ("key", "label", "opt_outs", "share"),
    "reason": ("key", "label", "group", "opt_outs", "share"),
    "topic": ("key", "label", "recipients", "opt_outs", "rate", "outside"),
    "campaign": ("key", "recipients", "opt_outs", "rate", "complaints", "complaint_rate"),
}
REASON_GROUPS = {Source.PREFERENCES.value: "person", Source.API.value: "admin", Source.IMPORT.value: "import"}


@dataclasses.dataclass(frozen=True)
class RateRow:
    key: str  # the stored code: source, kind, reason, topic name or campaign id
    label: str  # in English; pages translate it again from ``key``
    opt_outs: int  # events (source, kind, reason) or distinct addresses (topic, campaign)
    group: str = ""  # source: organic | import; reason: person | admin | import | machine
    share: float | None = None  # of the table's total
    recipients: int | None = None
    rate: float | None = None  # opt_outs / recipients; None when there are no recipients
    outside: int | None = None  # topic opt-outs by addresses never issued that topic
    complaints: int | None = None
    complaint_rate: float | None = None

    def value(self, column: str) -> Any:
        return getattr(self, column)


@dataclasses.dataclass(frozen=True)
class RateTable:
    by: str
    since: date
    until: date  # inclusive
    rows: list[RateRow]

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.by]


def ratio(part: int, whole: int | None) -> float | None:
    return part / whole if whole else None


def _bounds(since: date, until: date) -> tuple[datetime, datetime]:
    return datetime.combine(since, time(), UTC), datetime.combine(until + timedelta(days=1), time(), UTC)


def rate_table(
    session: Session,
    by: str,
    *,
    since: date,
    until: date,
    now: datetime,
    titles: Mapping[str, str] | None = None,
) -> RateTable:
    """The table for dimension ``by`` over the UTC days ``since`` to ``until``, both included.
    ``titles``: display titles of topics (``[[topics]] title``)."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    if by == "topic":
        rows = _topic_rows(session, since, until, now, titles or {})
    elif by == "campaign":
        rows = _campaign_rows(session, since, until, now)
    else:
        rows = _counter_rows(session, by, since, until)
    return RateTable(by, since, until, rows)


def _counter_rows(session: Session, by: str, since: date, until: date) -> list[RateRow]:
    col = getattr(EventCount, by)
    total = func.sum(EventCount.n)
    keys = (col, EventCount.source) if by == "reason" else (col,)
    stmt = (
        select(*keys, total)
        .where(EventCount.day >= since.isoformat(), EventCount.day <= until.isoformat())
        .group_by(*keys)
        .order_by(total.desc(), *keys)
    )
    if by != "kind":
        stmt = stmt.where(EventCount.kind.in_(OPT_OUT_KINDS))
    if by == "reason":
        stmt = stmt.where(EventCount.reason != "")
    counted: dict[tuple[str, str], int] = {}
    for row in session.execute(stmt):
        key, n = row[0], int(row[-1])
        group = _group(by, key, row[1] if by == "reason" else key)
        counted[(key, group)] = counted.get((key, group), 0) + n
    whole = sum(counted.values())
    rows = [RateRow(key, label(by, key), n, group, ratio(n, whole)) for (key, group), n in counted.items()]
    return sorted(rows, key=lambda r: (r.group if by == "reason" else "", -r.opt_outs, r.key))


def _group(by: str, key: str, source: str) -> str:
    if by == "reason":
        return REASON_GROUPS.get(source, "machine")
    if by == "source":
        return "import" if source == Source.IMPORT.value else "organic"
    return ""


def _issued(session: Session, kind: str, end: datetime, now: datetime) -> dict[str, int]:
    """Addresses issued a token per topic or campaign (``kind``) before ``end``. A range that
    reaches today counts every recipient so far: the per-name counters answer that at once;
    a range in the past counts the recipient rows issued before it ended."""
    if end > now:
        stmt = select(RecipientCount.name, RecipientCount.addresses).where(RecipientCount.kind == kind)
        return {name: int(n) for name, n in session.execute(stmt)}
    column = Recipient.topic if kind == "topic" else Recipient.campaign
    stmt = (
        select(column, func.count(distinct(Recipient.email_key)))
        .where(column != "", Recipient.created_at < end)
        .group_by(column)
    )
    return {name: int(n) for name, n in session.execute(stmt)}


def _topic_rows(session: Session, since: date, until: date, now: datetime, titles: Mapping[str, str]) -> list[RateRow]:
    start, end = _bounds(since, until)
    issued = _issued(session, "topic", end, now)
    scopes = session.scalars(
        select(distinct(Event.scope)).where(
            Event.scope.startswith(TOPIC_PREFIX), Event.received_at >= start, Event.received_at < end
        )
    ).all()
    names = sorted(set(issued) | set(titles) | {s[len(TOPIC_PREFIX) :] for s in scopes})
    rows = []
    for name in names:
        own = exists().where(
            Recipient.email_key == Event.email_key, Recipient.topic == name, Recipient.created_at < end
        )
        opted, outside = session.execute(
            select(_distinct_where(own), _distinct_where(~own)).where(
                Event.scope == topic_scope(name),
                Event.kind.in_(OPT_OUT_KINDS),
                Event.received_at >= start,
                Event.received_at < end,
            )
        ).one()
        recipients = int(issued.get(name, 0))
        rows.append(
            RateRow(
                name,
                titles.get(name) or name,
                int(opted),
                recipients=recipients,
                rate=ratio(int(opted), recipients),
                outside=int(outside),
            )
        )
    return rows


def _distinct_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """Distinct addresses among the selected events that meet ``condition``."""
    return func.count(distinct(case((condition, Event.email_key))))


def _campaign_rows(session: Session, since: date, until: date, now: datetime) -> list[RateRow]:
    start, end = _bounds(since, until)
    issued = _issued(session, "campaign", end, now)
    stmt = (
        select(
            Event.campaign,
            _distinct_where(Event.kind == Kind.UNSUBSCRIBE.value),
            _distinct_where(Event.kind == Kind.COMPLAINT.value),
        )
        .where(Event.campaign.is_not(None), Event.received_at >= start, Event.received_at < end)
        .group_by(Event.campaign)
    )
    acted = {c: (int(u), int(k)) for c, u, k in session.execute(stmt)}
    rows = []
    for name in set(issued) | {c for c, (u, k) in acted.items() if u or k}:
        recipients = int(issued.get(name, 0))
        unsubscribed, complained = acted.get(name, (0, 0))
        rows.append(
            RateRow(
                name,
                name,
                unsubscribed,
                recipients=recipients,
                rate=ratio(unsubscribed, recipients),
                complaints=complained,
                complaint_rate=ratio(complained, recipients),
            )
        )
    return sorted(rows, key=lambda r: (-(r.recipients or 0), r.key))

"""What the admin dashboard shows, read from the store (no Flask here).

Each function takes the caller's session and returns plain values; ``daily_chart`` also lays
out the bars of the server-rendered SVG chart, so the page needs no script.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from adapters.events import TOPIC_PREFIX, Kind, Source
from adapters.store.models import Event, EventCount, OutboxRow, PendingLookup, PushConfirmation, RecipientCount

OPT_OUT_KINDS = (Kind.UNSUBSCRIBE.value, Kind.COMPLAINT.value, Kind.BOUNCE.value)
# Bar colours in the order of :class:`Source` (smtp, oneclick, preferences, mailchimp, sendgrid,
# hubspot, api, import), then spares: a source added later gets one with no edit here.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f", "#ff9da7", "#bab0ac")
SOURCE_COLOURS = dict(zip(Source, itertools.cycle(PALETTE), strict=False))


def counts_by(session: Session, column: str, *, opt_outs_only: bool = True, limit: int = 20) -> list[tuple[str, int]]:
    """Event counts grouped by ``source``, ``kind`` or ``reason``, largest first (from the
    per-day counters, not the events)."""
    col = getattr(EventCount, column)
    total = func.sum(EventCount.n)
    stmt = select(col, total).group_by(col).order_by(total.desc(), col).limit(limit)
    if opt_outs_only:
        stmt = stmt.where(EventCount.kind.in_(OPT_OUT_KINDS))
    if column == "reason":
        stmt = stmt.where(EventCount.reason != "")
    return [(value, int(n)) for value, n in session.execute(stmt)]


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclasses.dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]
    first_day: str
    last_day: str
    peak: int


def daily_chart(session: Session, *, today: date, days: int = 30, width: int = 720, height: int = 200) -> Chart:
    """Opt-outs per UTC day and source over ``days`` days up to ``today``, as stacked bars."""
    first = today - timedelta(days=days - 1)
    stmt = (
        select(EventCount.day, EventCount.source, func.sum(EventCount.n))
        .where(EventCount.kind.in_(OPT_OUT_KINDS), EventCount.day >= first.isoformat())
        .group_by(EventCount.day, EventCount.source)
    )
    per_day: dict[str, dict[str, int]] = {}
    for d, source, n in session.execute(stmt):
        per_day.setdefault(d, {})[source] = int(n)
    peak = max((sum(v.values()) for v in per_day.values()), default=0)
    slot = width / days
    bars = []
    for i in range(days):
        d = (first + timedelta(days=i)).isoformat()
        y = float(height)
        for source, colour in SOURCE_COLOURS.items():
            n = per_day.get(d, {}).get(source.value, 0)
            if n:
                h = height * n / peak
                y -= h
                bars.append(
                    Bar(
                        round(i * slot + 1, 2),
                        round(y, 2),
                        round(slot - 2, 2),
                        round(h, 2),
                        colour,
                        f"{d} {source.value}: {n}",
                    )
                )
    used = {s for v in per_day.values() for s in v}
    legend: list[tuple[str, str]] = [(s.value, c) for s, c in SOURCE_COLOURS.items() if s.value in used]
    return Chart(width, height, bars, legend, first.isoformat(), today.isoformat(), peak)


@dataclasses.dataclass(frozen=True)
class Rate:
    name: str  # campaign id, or topic:<name>
    recipients: int
    opted_out: int

    @property
    def percent(self) -> float:
        return 100.0 * self.opted_out / self.recipients if self.recipients else 0.0


def unsubscribe_rates(session: Session, *, limit: int = 20) -> list[Rate]:
    """Per campaign and per topic: addresses that were issued a token, and those that opted out."""
    rates: list[Rate] = []
    issued = (
        select(RecipientCount.name, RecipientCount.addresses)
        .order_by(RecipientCount.addresses.desc(), RecipientCount.name)
        .limit(limit)
    )
    campaigns = dict(session.execute(issued.where(RecipientCount.kind == "campaign")).tuples().all())
    if campaigns:
        opted = _opted_out(session, Event.campaign, list(campaigns))
        rates += [Rate(c, n, opted.get(c, 0)) for c, n in campaigns.items()]
    topics = {f"{TOPIC_PREFIX}{t}": n for t, n in session.execute(issued.where(RecipientCount.kind == "topic"))}
    if topics:
        opted = _opted_out(session, Event.scope, list(topics))
        rates += [Rate(t, n, opted.get(t, 0)) for t, n in topics.items()]
    return rates


def _opted_out(session: Session, column: InstrumentedAttribute[Any], names: list[str]) -> dict[str, int]:
    """Distinct addresses with an opt-out event, per value of ``column`` among ``names``."""
    stmt = (
        select(column, func.count(distinct(Event.email_key)))
        .where(Event.kind.in_(OPT_OUT_KINDS), column.in_(names))
        .group_by(column)
    )
    return dict(session.execute(stmt).tuples().all())


@dataclasses.dataclass(frozen=True)
class Latency:
    provider: str
    pushes: int
    median_seconds: float
    p95_seconds: float
    max_seconds: float


def push_latencies(session: Session, *, since: datetime, sample: int = 10_000) -> list[Latency]:
    """Time from receipt of a request to the provider's confirmation, per provider: the last
    ``sample`` confirmations, still in the outbox or already compacted (newest ids first)."""
    o, c = OutboxRow, PushConfirmation
    queued = select(o.provider, o.received_at, o.done_at).where(o.state == "done", o.done_at >= since)
    kept = select(c.provider, c.received_at, c.done_at).where(c.done_at >= since)
    rows = [
        *session.execute(queued.order_by(o.id.desc()).limit(sample)),
        *session.execute(kept.order_by(c.id.desc()).limit(sample)),
    ]
    rows.sort(key=lambda r: r[2], reverse=True)
    seconds: dict[str, list[float]] = {}
    for provider, received, done in rows[:sample]:
        seconds.setdefault(provider, []).append(max((done - received).total_seconds(), 0.0))
    return [
        Latency(p, len(v), statistics.median(v), _percentile(sorted(v), 0.95), max(v))
        for p, v in sorted(seconds.items())
    ]


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def recent_events(session: Session, *, limit: int = 20) -> Sequence[Event]:
    """The events stored last (by the primary key: no scan of the events)."""
    return session.scalars(select(Event).order_by(Event.id.desc()).limit(limit)).all()


@dataclasses.dataclass(frozen=True)
class LookupBacklog:
    """Provider opt-outs stored but not yet applied because the provider named a contact id,
    not an address (HubSpot), and the worker has not read the address yet."""

    waiting: int
    oldest: datetime | None
    failing: Sequence[PendingLookup]  # tried and not resolved yet, most attempts first


def lookup_backlog(session: Session, *, limit: int = 50) -> LookupBacklog:
    waiting, oldest = session.execute(select(func.count(), func.min(PendingLookup.created_at))).one()
    stmt = (
        select(PendingLookup)
        .where(PendingLookup.attempts > 0)
        .order_by(PendingLookup.attempts.desc(), PendingLookup.id)
        .limit(limit)
    )
    return LookupBacklog(waiting, oldest, session.scalars(stmt).all())

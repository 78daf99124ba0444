"""What the admin dashboard shows, read from the store (no Flask here).

Each function takes the caller's session and returns plain values; ``daily_chart`` also lays
out the bars of the server-rendered SVG chart, so the page needs no script.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.events import Source
from adapters.store.models import Event, EventCount, OutboxRow, PendingLookup, PushConfirmation
from adapters.store.rates import OPT_OUT_KINDS

# Bar colours in the order of :class:`Source` (smtp, oneclick, preferences, mailchimp, sendgrid,
# hubspot, api, import), then spares: a source added later gets one with no edit here.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f", "#ff9da7", "#bab0ac")
SOURCE_COLOURS = dict(zip(Source, itertools.cycle(PALETTE), strict=False))
ORGANIC = tuple(s for s in Source if s is not Source.IMPORT)


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    day: str
    source: str
    n: int


@dataclasses.dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]
    first_day: str
    last_day: str
    peak: int


def daily_chart(
    session: Session,
    *,
    first: date,
    last: date,
    sources: Collection[Source] = ORGANIC,
    width: int = 720,
    height: int = 200,
) -> Chart:
    """Opt-outs per UTC day from ``first`` to ``last`` and source (among ``sources``), as
    stacked bars. Imports get a chart of their own: one import would flatten the rest."""
    days = (last - first).days + 1
    stmt = (
        select(EventCount.day, EventCount.source, func.sum(EventCount.n))
        .where(
            EventCount.kind.in_(OPT_OUT_KINDS),
            EventCount.day >= first.isoformat(),
            EventCount.day <= last.isoformat(),
            EventCount.source.in_([s.value for s in sources]),
        )
        .group_by(EventCount.day, EventCount.source)
    )
    per_day: dict[str, dict[str, int]] = {}
    for d, source, n in session.execute(stmt):
        per_day.setdefault(d, {})[source] = int(n)
    peak = max((sum(v.values()) for v in per_day.values()), default=0)
    slot = width / days
    bar_width = max(slot - 2, slot * 0.6)
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
                        round(i * slot + (slot - bar_width) / 2, 2),
                        round(y, 2),
                        round(bar_width, 2),
                        round(h, 2),
                        colour,
                        d,
                        source.value,
                        n,
                    )
                )
    used = {s for v in per_day.values() for s in v}
    legend: list[tuple[str, str]] = [(s.value, c) for s, c in SOURCE_COLOURS.items() if s.value in used]
    return Chart(width, height, bars, legend, first.isoformat(), last.isoformat(), peak)


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

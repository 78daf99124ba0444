"""``optout-hub report honour`` (README "Compliance"): how long each opt-out took from receipt
to being stored and to being confirmed by every provider, percentiles per source and per
provider, and every opt-out not yet confirmed everywhere against the two limits.

Percentiles are nearest-rank: p90 of n durations is the ⌈0.9·n⌉-th smallest, always one of
the measured durations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TextIO

from sqlalchemy.orm import Session

from adapters.compliance.deadlines import LIMITS, Limits
from adapters.events import Kind
from adapters.store.honour import Request, requests_since
from adapters.store.outbox import Unsettled, unsettled_optouts

PERCENTILES = (50, 90, 99)
DEFAULT_PERIOD = timedelta(days=30)  # of --since


def opt_out_kinds(suppress_bounces: bool) -> tuple[str, ...]:
    """The kinds of event that are requests to stop (hard bounces only when they suppress)."""
    kinds = (Kind.UNSUBSCRIBE, Kind.COMPLAINT, Kind.BOUNCE) if suppress_bounces else (Kind.UNSUBSCRIBE, Kind.COMPLAINT)
    return tuple(k.value for k in kinds)


def percentiles(values: list[float]) -> dict[str, float] | None:
    """``p50``, ``p90``, ``p99`` (nearest rank) and ``max`` of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    figures = {f"p{q}": ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] for q in PERCENTILES}
    figures["max"] = ordered[-1]
    return figures


@dataclasses.dataclass
class _Group:
    requests: int = 0
    stored: list[float] = dataclasses.field(default_factory=list)
    settled: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "settled": len(self.settled),
            "to_stored_seconds": percentiles(self.stored),
            "to_settled_seconds": percentiles(self.settled),
        }


@dataclasses.dataclass
class Tally:
    """Durations per source (receipt to stored, receipt to settled everywhere) and per provider
    (receipt to that provider's confirmation), in seconds."""

    by_source: dict[str, _Group] = dataclasses.field(default_factory=dict)
    by_provider: dict[str, _Group] = dataclasses.field(default_factory=dict)

    def add(self, request: Request) -> None:
        source = self.by_source.setdefault(request.source, _Group())
        source.requests += 1
        source.stored.append((request.stored_at - request.received_at).total_seconds())
        if request.settled_at is not None:
            source.settled.append((request.settled_at - request.received_at).total_seconds())
        for provider, at in request.settled.items():
            group = self.by_provider.setdefault(provider, _Group())
            group.requests += 1
            if at is not None:
                group.settled.append((at - request.received_at).total_seconds())

    def summary(self) -> dict[str, Any]:
        return {
            "by_source": {name: g.summary() for name, g in sorted(self.by_source.items())},
            "by_provider": {
                name: {k: v for k, v in g.summary().items() if k != "to_stored_seconds"}
                for name, g in sorted(self.by_provider.items())
            },
        }


@dataclasses.dataclass(frozen=True)
class Outstanding:
    """An opt-out some provider has not confirmed, against the two limits."""

    optout: Unsettled
    deadlines: dict[str, datetime]
    now: datetime

    @property
    def past(self) -> list[str]:
        return [limit for limit in LIMITS if self.now >= self.deadlines[limit]]

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.optout.email,
            "scope": self.optout.scope,
            "received_at": self.optout.received_at.isoformat(),
            "age_seconds": (self.now - self.optout.received_at).total_seconds(),
            "deadlines": {limit: at.isoformat() for limit, at in self.deadlines.items()},
            "past": self.past,
            "providers": [
                {"provider": r.provider, "state": r.state, "attempts": r.attempts, "last_error": r.last_error}
                for r in self.optout.rows
            ],
        }


def outstanding(session: Session, limits: Limits, now: datetime) -> list[Outstanding]:
    """Every opt-out not yet confirmed by every provider, oldest first."""
    return [Outstanding(u, limits.deadlines(u.received_at), now) for u in unsettled_optouts(session, limit=None)]


def overdue_counts(items: Iterable[Outstanding]) -> dict[str, int]:
    counts = dict.fromkeys(LIMITS, 0)
    for item in items:
        for limit in item.past:
            counts[limit] += 1
    return counts


def _request_json(r: Request) -> dict[str, Any]:
    return {
        "event_id": r.event_id,
        "email": r.email,
        "scope": r.scope,
        "source": r.source,
        "kind": r.kind,
        "received_at": r.received_at.isoformat(),
        "stored_at": r.stored_at.isoformat(),
        "settled": {p: at.isoformat() if at else None for p, at in sorted(r.settled.items())},
        "settled_at": r.settled_at.isoformat() if r.settled_at else None,
    }


def write_report(
    session: Session, out: TextIO, *, since: datetime, now: datetime, limits: Limits, kinds: tuple[str, ...], fmt: str
) -> int:
    """Write the report as ``text`` or ``json`` (each request too, streamed as read); 1 when
    an opt-out is past a limit, else 0."""
    tally = Tally()
    if fmt == "json":
        out.write(f'{{"as_of": {json.dumps(now.isoformat())}, "since": {json.dumps(since.isoformat())}, "requests": [')
    for i, request in enumerate(requests_since(session, since, kinds)):
        tally.add(request)
        if fmt == "json":
            out.write(("," if i else "") + "\n  " + json.dumps(_request_json(request), ensure_ascii=False))
    items = outstanding(session, limits, now)
    overdue = overdue_counts(items)
    if fmt == "json":
        rest = {**tally.summary(), "unsettled": [i.as_json() for i in items], "overdue": overdue}
        out.write("\n]")
        for key, value in rest.items():
            out.write(f",\n {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
        out.write("\n}\n")
    else:
        _write_text(out, tally, items, overdue, since=since, now=now)
    return 1 if any(overdue.values()) else 0


def duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``12m05s``, ``3h04m``, ``2d03h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _figures(figures: dict[str, float] | None) -> str:
    if figures is None:
        return f"{'-':>8}" * 4
    return "".join(f"{duration(figures[k]):>8}" for k in ("p50", "p90", "p99", "max"))


def _write_text(
    out: TextIO, tally: Tally, items: list[Outstanding], overdue: dict[str, int], *, since: datetime, now: datetime
) -> None:
    summary = tally.summary()
    heading = f"{'':<14}{'requests':>9}{'settled':>9}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
    out.write(f"Time to honour: opt-outs received since {since.isoformat()} (as of {now.isoformat()})\n")
    out.write("\nReceipt to stored, per source\n" + heading.replace("settled", "       ") + "\n")
    for name, g in summary["by_source"].items():
        out.write(f"{name:<14}{g['requests']:>9}{'':>9}{_figures(g['to_stored_seconds'])}\n")
    out.write("\nReceipt to settled at every provider, per source\n" + heading + "\n")
    for name, g in summary["by_source"].items():
        out.write(f"{name:<14}{g['requests']:>9}{g['settled']:>9}{_figures(g['to_settled_seconds'])}\n")
    out.write("\nReceipt to confirmed, per provider\n" + heading + "\n")
    for name, g in summary["by_provider"].items():
        out.write(f"{name:<14}{g['requests']:>9}{g['settled']:>9}{_figures(g['to_settled_seconds'])}\n")
    out.write(
        f"\nNot yet settled at every provider, oldest first: {len(items)}"
        f" (past 2 days: {overdue['2d']}, past 10 business days: {overdue['10bd']})\n"
    )
    for item in items:
        limits = "  ".join(
            f"{limit} {item.deadlines[limit].strftime('%Y-%m-%d %H:%M')}{' OVERDUE' if limit in item.past else ''}"
            for limit in LIMITS
        )
        providers = ", ".join(f"{r.provider}: {r.state} ({r.attempts} attempts)" for r in item.optout.rows)
        age = duration((now - item.optout.received_at).total_seconds())
        out.write(
            f"  {item.optout.received_at.strftime('%Y-%m-%d %H:%M')}  age {age}"
            f"  {limits}  {item.optout.email} ({item.optout.scope})  {providers}\n"
        )

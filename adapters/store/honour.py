"""Reading each opt-out request's way through the hub for the time-to-honour report (README
"Compliance"): received, stored, and settled at each provider it is pushed to.

Stored is when the transaction that recorded the event wrote its outbox rows (their
``created_at``); for an event that queued none, when its mail was classified, else when it was
received (webhooks, one-click and the API store in the request's own transaction). Settled at a
provider is the latest ``done_at`` of the event's opt-out rows there, once none is pending or
dead. Pushes are read wherever they are, in the outbox or compacted
(:func:`~adapters.store.compaction.pushes`). One query, streamed in event order, so a year of
events is never held at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, select
from sqlalchemy.orm import Session

from adapters.store.compaction import pushes
from adapters.store.models import Event, Evidence

STREAM_ROWS = 5000


@dataclasses.dataclass(frozen=True)
class Request:
    event_id: int
    email: str
    scope: str
    source: str
    kind: str
    received_at: datetime
    stored_at: datetime
    settled: dict[str, datetime | None]  # provider -> when it confirmed (None: not yet)

    @property
    def settled_at(self) -> datetime | None:
        """When every provider had confirmed; the time stored when there was nothing to push."""
        if any(at is None for at in self.settled.values()):
            return None
        return max((at for at in self.settled.values() if at is not None), default=self.stored_at)


def requests_since(session: Session, since: datetime, kinds: Collection[str]) -> Iterator[Request]:
    """Every opt-out event of ``kinds`` received at or after ``since``, in storage order."""
    e, ev = Event.__table__.c, Evidence.__table__.c
    asked = (e.received_at >= since, e.kind.in_(list(kinds)))
    caused = pushes(select(e.id).where(*asked))
    o = caused.c
    stmt = (
        select(
            e.id,
            e.email,
            e.scope,
            e.source,
            e.kind,
            e.received_at,
            ev.processed_at,
            o.provider,
            o.state,
            o.created_at,
            o.done_at,
        )
        .select_from(Event.__table__)
        .outerjoin(caused, and_(o.event_id == e.id, o.action == "unsubscribe"))
        .outerjoin(Evidence.__table__, ev.id == e.evidence_id)
        .where(*asked)
        .order_by(e.id)
        .execution_options(stream_results=True, yield_per=STREAM_ROWS)
    )
    result = session.execute(stmt)
    try:
        current: list[Row[Any]] = []
        for row in result:
            if current and current[0].id != row.id:
                yield _request(current)
                current = []
            current.append(row)
        if current:
            yield _request(current)
    finally:
        result.close()


def _request(rows: list[Row[Any]]) -> Request:
    first = rows[0]
    settled: dict[str, datetime | None] = {}
    created = []
    for row in rows:
        if row.provider is None:
            continue
        created.append(row.created_at)
        done = row.done_at if row.state == "done" else None
        if row.provider not in settled:
            settled[row.provider] = done
        elif settled[row.provider] is not None:
            settled[row.provider] = None if done is None else max(done, settled[row.provider])
    stored = min(created, default=first.processed_at or first.received_at)
    return Request(first.id, first.email, first.scope, first.source, first.kind, first.received_at, stored, settled)

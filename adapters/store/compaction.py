"""Outbox compaction: settled rows leave the outbox, what the readers need of them stays.

A ``done`` outbox row never changes again. Once it has been settled for a while
(``[worker] compact_after_seconds``) the worker moves it to ``push_confirmations``
(:class:`~adapters.store.models.PushConfirmation`: event, provider, action, scope, attempts,
receipt, queued and confirmed times, last status and answer; the address is the event's) in
bounded batches, so the outbox, its index and every worker query over it stay proportional to
the work still pending or dead. A row an admin retried stays: the dashboard's admin actions
read who retried it from the outbox.

Whatever reads pushes rather than work to do (the audit, ``report honour``, reconciliation)
reads both tables through :func:`pushes`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Row, String, Subquery, delete, insert, literal, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from adapters.store.bulk import chunks
from adapters.store.models import OutboxRow, PushConfirmation

KEPT = (
    "id",
    "event_id",
    "provider",
    "action",
    "scope",
    "attempts",
    "received_at",
    "created_at",
    "done_at",
    "last_status",
    "last_error",
)
"""The columns an outbox row keeps in ``push_confirmations``: what :func:`pushes` reads."""


def compact_settled(session: Session, *, before: datetime, limit: int) -> int:
    """Move up to ``limit`` rows settled ``done`` at or before ``before`` to
    ``push_confirmations`` (one INSERT ... SELECT and one DELETE); returns how many. On
    PostgreSQL concurrent workers skip each other's rows (``SKIP LOCKED``)."""
    outbox = OutboxRow.__table__
    pick = (
        select(outbox.c.id)
        .where(outbox.c.state == "done", outbox.c.done_at <= before, outbox.c.retried_by.is_(None))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if ids:
        rows = select(*(outbox.c[name] for name in KEPT)).where(outbox.c.id.in_(ids))
        session.execute(insert(PushConfirmation.__table__).from_select(list(KEPT), rows))
        session.execute(delete(outbox).where(outbox.c.id.in_(ids)))
    return len(ids)


def pushes(events: Select[Any] | Collection[int]) -> Subquery:
    """Every push of the given events (ids, or a SELECT of them), wherever it is: outbox rows
    in any state and compacted ones (state ``done``), with the columns of :data:`KEPT` and
    ``state``. A compacted row keeps its outbox id, so ordering by ``id`` is the order queued.

    Each table is filtered by ``events`` itself, not by a join outside: SQLite materializes a
    UNION ALL it joins, and would otherwise copy every push ever made."""
    o, c = OutboxRow.__table__.c, PushConfirmation.__table__.c
    ids = events if isinstance(events, Select) else list(events)
    queued = select(*(o[name] for name in KEPT), o.state).where(o.event_id.in_(ids))
    kept = select(*(c[name] for name in KEPT), literal("done", String(12)).label("state")).where(c.event_id.in_(ids))
    return union_all(queued, kept).subquery("pushes")


def pushes_of(session: Session, event_ids: Collection[int]) -> dict[int, list[Row[Any]]]:
    """Each event's pushes (rows of :func:`pushes`), in the order they were queued."""
    found: dict[int, list[Row[Any]]] = {}
    for chunk in chunks(list(event_ids), 500):
        both = pushes(chunk)
        for row in session.execute(select(both).order_by(both.c.id)):
            found.setdefault(row.event_id, []).append(row)
    return found

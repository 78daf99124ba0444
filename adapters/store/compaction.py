"""Outbox compaction: settled rows leave the outbox, what the audit needs of them stays.

A ``done`` outbox row never changes again. Once it has been settled for a while
(``[worker] compact_after_seconds``) the worker moves it to ``push_confirmations``
(:class:`~adapters.store.models.PushConfirmation`: event, provider, attempts, receipt, queued
and confirmed times, last status and answer) in bounded batches, so the outbox, its index and
every worker query over it stay proportional to the work still pending or dead.
:func:`pushes_of` reads an event's pushes from both tables.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from adapters.store.models import OutboxRow, PushConfirmation

KEPT = ("id", "event_id", "provider", "attempts", "received_at", "created_at", "done_at", "last_status", "last_error")


def compact_settled(session: Session, *, before: datetime, limit: int) -> int:
    """Move up to ``limit`` rows settled ``done`` at or before ``before`` to
    ``push_confirmations`` (one INSERT ... SELECT and one DELETE); returns how many. On
    PostgreSQL concurrent workers skip each other's rows (``SKIP LOCKED``)."""
    outbox = OutboxRow.__table__
    pick = select(outbox.c.id).where(outbox.c.state == "done", outbox.c.done_at <= before).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if ids:
        rows = select(*(outbox.c[name] for name in KEPT)).where(outbox.c.id.in_(ids))
        session.execute(insert(PushConfirmation.__table__).from_select(list(KEPT), rows))
        session.execute(delete(outbox).where(outbox.c.id.in_(ids)))
    return len(ids)


def pushes_of(session: Session, event_ids: Collection[int]) -> dict[int, list[Any]]:
    """Each event's pushes, in the order they were queued: outbox rows (pending, dead, or done
    and not yet compacted) and :class:`PushConfirmation` rows, which read alike (``provider``,
    ``state``, ``attempts``, ``created_at``, ``done_at``, ``last_status``, ``last_error``)."""
    found: dict[int, list[Any]] = {}
    ids = list(event_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        queued = session.scalars(select(OutboxRow).where(OutboxRow.event_id.in_(chunk))).all()
        kept = session.scalars(select(PushConfirmation).where(PushConfirmation.event_id.in_(chunk))).all()
        both: list[OutboxRow | PushConfirmation] = [*queued, *kept]
        for row in both:
            found.setdefault(row.event_id, []).append(row)
    for rows in found.values():
        rows.sort(key=lambda row: row.id)
    return found

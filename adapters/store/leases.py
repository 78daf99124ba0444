"""Claiming due rows of a retry queue under a lease: the primitive the worker's queues share.

A queue row (HubSpot lookups, confirmation mail) carries ``next_attempt_at``. Claiming it
moves that time past the lease, in the claiming transaction, so a worker that dies mid-job
only delays its rows; on PostgreSQL, rows another worker holds are skipped (``SKIP LOCKED``).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Protocol, TypeVar

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.orm import Session


class QueueRow(Protocol):
    """A model with ``id`` and ``next_attempt_at`` columns."""

    __table__: ClassVar[Table]
    id: int
    next_attempt_at: datetime


Q = TypeVar("Q", bound=QueueRow)


def claim_due(
    session: Session, model: type[Q], *conditions: ColumnElement[bool], now: datetime, until: datetime, limit: int
) -> list[Q]:
    """Up to ``limit`` rows of ``model`` due ``now`` (and matching ``conditions``), oldest
    first, their next attempt moved to ``until``, in the caller's transaction."""
    due, row_id = model.__table__.c.next_attempt_at, model.__table__.c.id
    stmt = select(model).where(due <= now, *conditions).order_by(due, row_id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.next_attempt_at = until
    return rows

"""Reading and repairing the push outbox for admins: counts, dead letters, retry.

The worker (:mod:`adapters.worker.outbox`) claims and settles rows; this module only reads
them and puts a dead row back in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from adapters.store.models import OutboxRow

STATES = ("pending", "done", "dead")


def outbox_summary(session: Session) -> dict[str, dict[str, int]]:
    """Row counts per provider and state: ``{provider: {"pending": n, "done": n, "dead": n}}``."""
    stmt = select(OutboxRow.provider, OutboxRow.state, func.count()).group_by(OutboxRow.provider, OutboxRow.state)
    summary: dict[str, dict[str, int]] = {}
    for provider, state, count in session.execute(stmt):
        summary.setdefault(provider, dict.fromkeys(STATES, 0))[state] = count
    return dict(sorted(summary.items()))


def dead_rows(session: Session, *, limit: int = 100, provider: str | None = None) -> Sequence[OutboxRow]:
    """The most recent dead rows, newest first, with the provider's answer in ``last_error``."""
    stmt = select(OutboxRow).where(OutboxRow.state == "dead")
    if provider is not None:
        stmt = stmt.where(OutboxRow.provider == provider)
    return session.scalars(stmt.order_by(OutboxRow.id.desc()).limit(limit)).all()


def retry_row(session: Session, row_id: int, *, now: datetime) -> bool:
    """Put a dead row back in the queue, due now, with its attempts reset.

    Returns ``False`` when there is no dead row with that id (unknown, pending or done).
    """
    stmt = (
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.state == "dead")
        .values(state="pending", due_at=now, attempts=0, lease_until=None, lease_owner=None)
    )
    return cast(CursorResult[Any], session.execute(stmt)).rowcount == 1

"""The change feed in the store: consent changes written with their events, read in a stable order.

:func:`record_changes` runs inside :func:`adapters.store.record.record_events`, so a change,
its event and the deliveries it queues for ``[[subscribers]]`` commit together.

**Order and cursor.** A reader must never skip a change that commits after it read, even
when that change was given a smaller number than one it has already seen (ids from a
PostgreSQL sequence are handed out in one order, and their transactions commit in another).
So each change gets its ``seq`` from the one ``change_sequence`` row, updated (``last =
last + n``) as late as possible in the recording transaction: the update locks the row
until the transaction commits or rolls back, so the next transaction that writes changes
waits there and numbers its own after them. Numbers are therefore given in commit order,
each one visible before the next is handed out, and a rolled-back transaction leaves no
gap. A reader that has seen ``seq`` N can never be handed a change numbered N or lower
later: the cursor is simply the last ``seq`` read (opaque to clients). The price is that
transactions writing changes commit one at a time from that update on (the same holds for
the day's ``event_counts`` rows, updated just after). SQLite runs one write transaction at a
time anyway.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Integer, func, literal, select, update
from sqlalchemy.orm import Session

from adapters.errors import PayloadError
from adapters.providers import payloads
from adapters.store.bulk import driver_time, execute_many
from adapters.store.models import Change, ChangeSequence, Event, WebhookDelivery

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_COLUMNS = ("event_id", "suppressed", "recorded_at")  # each recorded now


@dataclasses.dataclass(frozen=True)
class SubscriberFilter:
    """Who is told of which changes: a ``[[subscribers]]`` URL and its event kinds (empty: all)."""

    url: str
    kinds: frozenset[str] = frozenset()


def record_changes(
    session: Session, rows: Sequence[tuple[int, bool]], subscribers: Sequence[SubscriberFilter], *, now: datetime
) -> None:
    """Store ``rows`` (``(event_id, suppressed)``, at most one per event) as changes recorded
    ``now``, and queue one delivery per subscriber that wants the change's kind, in the
    caller's transaction."""
    if not rows:
        return
    table = ChangeSequence.__table__
    last = session.execute(
        update(table).where(table.c.id == 1).values(last=table.c.last + len(rows)).returning(table.c.last)
    ).scalar_one()
    first = last - len(rows) + 1
    at = driver_time(session, now)
    numbered = [(seq, event_id, suppressed, at) for seq, (event_id, suppressed) in enumerate(rows, start=first)]
    execute_many(session, Change.__table__, ("seq", *_COLUMNS), numbered, encoded=True)
    deliveries = WebhookDelivery.__table__
    for sub in subscribers:
        picked = select(
            Change.seq,
            literal(sub.url),
            literal("pending"),
            literal(0, Integer),
            literal(now, Change.recorded_at.type),
            literal(now, Change.recorded_at.type),
        ).where(Change.seq.between(first, last))  # this transaction's changes, by the feed's key
        if sub.kinds:
            picked = picked.join(Event, Event.id == Change.event_id).where(Event.kind.in_(sorted(sub.kinds)))
        session.execute(
            deliveries.insert().from_select(
                ["change_id", "subscriber", "state", "attempts", "next_attempt_at", "created_at"], picked
            )
        )


_CURSOR = "c1."  # inside the encoding, so that a bare number is not a cursor


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR}{seq}".encode()).decode().rstrip("=")


def decode_cursor(value: str) -> int:
    """The ``seq`` of the cursor a client was given, or :class:`PayloadError`."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    seq = payloads.digits(raw.removeprefix(_CURSOR)) if raw.startswith(_CURSOR) else None
    if seq is None:
        raise PayloadError("after: not a cursor this feed issued")
    return seq


@dataclasses.dataclass(frozen=True)
class Page:
    changes: list[Change]
    next: int  # the ``seq`` to read after next: the last change's, or ``after`` when none


def read_changes(session: Session, after: int, limit: int) -> Page:
    """Up to ``limit`` changes numbered after ``after`` (0: from the start), in feed order."""
    changes = list(session.scalars(select(Change).where(Change.seq > after).order_by(Change.seq).limit(limit)))
    return Page(changes, changes[-1].seq if changes else after)


def change_document(change: Change) -> dict[str, Any]:
    """A change as the feed and the outbound webhooks show it."""
    return {
        "cursor": encode_cursor(change.seq),
        "email": change.email,
        "scope": change.scope,
        "state": "opted_out" if change.suppressed else "subscribed",
        "kind": change.kind,
        "source": change.source,
        "actor": change.actor,
        "occurred_at": change.occurred_at.isoformat(),
        "recorded_at": change.recorded_at.isoformat(),
        "event_id": change.event_id,
    }


# --- deliveries to subscribers, for the worker and /admin -----------------------------------


def dead_deliveries(session: Session, *, limit: int = 100) -> list[tuple[WebhookDelivery, Change]]:
    """The most recent dead deliveries with their change, newest first, with the subscriber's answer."""
    stmt = select(WebhookDelivery, Change).join(Change).where(WebhookDelivery.state == "dead")
    return [(d, c) for d, c in session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit)).tuples()]


def retry_delivery(session: Session, delivery_id: int, *, now: datetime) -> bool:
    """Put a dead delivery back in the queue, due now; ``False`` when there is no such dead one."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "dead")
        .values(state="pending", next_attempt_at=now, attempts=0)
    )
    return cast(CursorResult[Any], session.execute(stmt)).rowcount == 1


def settle_delivery(
    session: Session,
    delivery_id: int,
    state: str,
    *,
    due: datetime,
    now: datetime,
    status: int | None,
    error: str | None,
) -> None:
    """Record one attempt's outcome: ``done``, ``dead``, or ``pending`` again at ``due``."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending")
        .values(
            state=state,
            next_attempt_at=due,
            done_at=now if state == "done" else None,
            last_status=status,
            last_error=error,
        )
    )


def delivery_counts(session: Session) -> dict[str, int]:
    """Deliveries per state (for /admin)."""
    stmt = select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
    return {state: n for state, n in session.execute(stmt).tuples()}

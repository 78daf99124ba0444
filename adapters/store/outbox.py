"""The push outbox in the store: what a row should push now, its lease, and admin reads.

An outbox row means "this provider must converge (address, scope) to the hub's current
state". :func:`desired_states` reads that state and its version (the ``event_id`` of the
``suppressions`` row, which changes with every transition), so the worker pushes what holds
now, not what held when the row was written, and settles a row only while the version it
pushed is still current. The worker (:mod:`adapters.worker.outbox`) claims and settles rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from adapters.addresses import address_key
from adapters.store.models import OutboxRow, Suppression

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


def retry_row(session: Session, row_id: int, *, now: datetime, admin: str) -> bool:
    """Put a dead row back in the queue, due now, with its attempts reset, recording which
    admin retried it.

    Returns ``False`` when there is no dead row with that id (unknown, pending or done).
    """
    stmt = (
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.state == "dead")
        .values(state="pending", due_at=now, attempts=0, lease_until=None, lease_owner=None)
        .values(retried_by=admin, retried_at=now)
    )
    return cast(CursorResult[Any], session.execute(stmt)).rowcount == 1


def retry_dead(session: Session, provider: str, *, now: datetime, since: datetime | None = None) -> int:
    """Put every dead row of ``provider`` back in the queue (due now, attempts reset) in one
    UPDATE; ``since``: only rows that went dead at or after it (a dead row's ``due_at`` is when
    it died). Returns how many rows were put back."""
    table = OutboxRow.__table__
    stmt = update(table).where(table.c.state == "dead", table.c.provider == provider)
    if since is not None:
        stmt = stmt.where(table.c.due_at >= since)
    values = {"state": "pending", "due_at": now, "attempts": 0, "lease_until": None, "lease_owner": None}
    return cast(CursorResult[Any], session.execute(stmt.values(**values))).rowcount


Key = tuple[str, str]  # (email_key, scope)


@dataclasses.dataclass(frozen=True)
class Desired:
    """What a provider should hold for one address and scope, and the version of that state."""

    action: str  # unsubscribe | resubscribe
    version: int  # suppressions.event_id: the event of the last transition


def desired_states(session: Session, keys: Collection[Key], *, lock: bool = False) -> dict[Key, Desired]:
    """The current state of each (email_key, scope) that has one. A topic's state is its own
    row: global and topic states are kept apart. ``lock`` (PostgreSQL) holds the rows shared
    until the caller's transaction ends, so no transition commits between reading and settling."""
    found: dict[Key, Desired] = {}
    addresses = sorted({key for key, _ in keys})
    table = Suppression.__table__
    for start in range(0, len(addresses), 500):
        stmt = select(table.c.email_key, table.c.scope, table.c.suppressed, table.c.event_id).where(
            table.c.email_key.in_(addresses[start : start + 500])
        )
        if lock and session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(read=True)
        for row in session.execute(stmt):
            key = (row.email_key, row.scope)
            if key in keys:
                found[key] = Desired("unsubscribe" if row.suppressed else "resubscribe", row.event_id)
    return found


def held_scopes(session: Session, email_keys: Collection[str]) -> dict[str, set[str]]:
    """The scopes each address is opted out of now: a resubscribe at one scope must leave the
    lists and groups of the others opted out at the provider (a global opt-out covers a
    topic's list at a provider whose global opt-out is those same lists)."""
    held: dict[str, set[str]] = {}
    keys = sorted(set(email_keys))
    table = Suppression.__table__
    for start in range(0, len(keys), 500):
        stmt = select(table.c.email_key, table.c.scope).where(
            table.c.email_key.in_(keys[start : start + 500]), table.c.suppressed
        )
        for row in session.execute(stmt):
            held.setdefault(row.email_key, set()).add(row.scope)
    return held


def renew_leases(session: Session, ids: Collection[int], *, owner: str, until: datetime) -> set[int]:
    """Extend ``owner``'s lease on the pending rows ``ids`` to ``until``; the ids it still holds
    (a row whose lease ran out and was claimed by another worker is no longer this one's)."""
    table = OutboxRow.__table__
    held = table.c.id.in_(list(ids)), table.c.lease_owner == owner, table.c.state == "pending"
    session.execute(update(table).where(*held).values(lease_until=until))
    return set(session.scalars(select(table.c.id).where(*held)))


def release_leases(session: Session, *, owner: str) -> int:
    """End ``owner``'s leases on pending rows, so they are due again at once; how many. For a
    worker whose round failed (the database went away mid-push): it works on none of them now,
    and they need not wait out the lease."""
    table = OutboxRow.__table__
    held = table.c.lease_owner == owner, table.c.state == "pending", table.c.lease_until.is_not(None)
    return cast(CursorResult[Any], session.execute(update(table).where(*held).values(lease_until=None))).rowcount


def lease_owners(session: Session) -> list[str]:
    """The owners of live leases on pending rows."""
    table = OutboxRow.__table__
    held = table.c.state == "pending", table.c.lease_owner.is_not(None), table.c.lease_until.is_not(None)
    return list(session.scalars(select(table.c.lease_owner).where(*held).distinct()))


def covered_rows(session: Session, provider: str, versions: dict[Key, int], *, owner: str, now: datetime) -> list[int]:
    """Pending rows of ``provider`` that a push of the given versions settles too: same address
    and scope, written for that version or an older one, and not under another worker's live
    lease. (A retry of an older row would only push the same state again.)"""
    if not versions:
        return []
    table = OutboxRow.__table__
    emails = sorted({key for key, _ in versions})
    ids = []
    for start in range(0, len(emails), 500):
        stmt = select(table.c.id, table.c.email, table.c.scope, table.c.event_id).where(
            table.c.state == "pending",
            table.c.provider == provider,
            func.lower(table.c.email).in_(emails[start : start + 500]),
            or_(table.c.lease_owner == owner, table.c.lease_until.is_(None), table.c.lease_until <= now),
        )
        for row in session.execute(stmt):
            version = versions.get((address_key(row.email), row.scope))
            if version is not None and row.event_id <= version:
                ids.append(row.id)
    return ids


UNSETTLED = ("pending", "dead")


def oldest_unsettled(session: Session) -> dict[str, datetime]:
    """Per provider, when the oldest opt-out it has not yet confirmed reached the hub."""
    stmt = (
        select(OutboxRow.provider, func.min(OutboxRow.received_at))
        .where(OutboxRow.state.in_(UNSETTLED), OutboxRow.action == "unsubscribe")
        .group_by(OutboxRow.provider)
    )
    return {provider: oldest for provider, oldest in session.execute(stmt).tuples()}


@dataclasses.dataclass(frozen=True)
class Unsettled:
    """An opt-out (address and scope) that some provider has not confirmed yet: its rows there."""

    email: str
    scope: str
    received_at: datetime  # of the oldest unconfirmed row
    rows: tuple[OutboxRow, ...]


def unsettled_optouts(session: Session, *, limit: int | None = 100) -> list[Unsettled]:
    """Opt-outs not yet settled at every provider, oldest first: pending (being retried) or
    dead (waiting for an admin) rows written for an opt-out. ``limit=None``: all of them."""
    stmt = (
        select(OutboxRow)
        .where(OutboxRow.state.in_(UNSETTLED), OutboxRow.action == "unsubscribe")
        .order_by(OutboxRow.received_at, OutboxRow.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit * 10)
    grouped: dict[Key, list[OutboxRow]] = {}
    for row in session.scalars(stmt):
        key = (address_key(row.email), row.scope)
        if key in grouped or limit is None or len(grouped) < limit:
            grouped.setdefault(key, []).append(row)
    return [Unsettled(rows[0].email, rows[0].scope, rows[0].received_at, tuple(rows)) for rows in grouped.values()]


def unsettled_received_before(session: Session, instants: dict[str, datetime]) -> dict[str, int]:
    """Per label, how many opt-outs (address and scope) not yet settled at every provider
    were received before that label's instant (by their oldest unconfirmed row)."""
    oldest = (
        select(func.min(OutboxRow.received_at).label("received_at"))
        .where(OutboxRow.state.in_(UNSETTLED), OutboxRow.action == "unsubscribe")
        .group_by(func.lower(OutboxRow.email), OutboxRow.scope)
        .subquery()
    )
    counts = {}
    for label, instant in instants.items():
        counts[label] = session.scalar(select(func.count()).where(oldest.c.received_at < instant)) or 0
    return counts

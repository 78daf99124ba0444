"""Reconciliation in the store (README "Reconciliation"): where each provider's pull stands,
and what one pulled page changes, in the transaction that moves the checkpoint on.

A page's opt-outs are recorded as that provider's events (:func:`record_events`: stored once
however often they are read, pushed to the other providers by the outbox). An address the
provider reports mailable while the hub holds its opt-out at that scope is either

- a **removal** at the provider, when the provider held the opt-out before (it came from
  there, or a push of it there was settled): an unproven resubscribe, recorded as that
  provider's event, which :mod:`adapters.consent` turns into a conflict and a push back; or
- **drift**, when the hub's push never got there (none, or a dead one): pushed again.

Either way nothing is done while a push of it to that provider is pending. Pushes are read
wherever they are, in the outbox or compacted (:func:`~adapters.store.compaction.pushes`), by
their event's address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.orm import Session

from adapters.addresses import address_key
from adapters.events import Actor, Kind, OptOutEvent, Source, Verification
from adapters.providers.pull import PullPage, pull_event_id
from adapters.store.bulk import chunks, execute_many, values_table
from adapters.store.compaction import pushes
from adapters.store.models import Event, OutboxRow, ReconcileCheckpoint, ReconcileSnapshot, Suppression
from adapters.store.record import OUTBOX_COLUMNS, RecordResult, StorePolicy, record_events

FULL, CHANGES = "full", "changes"  # the pull kinds: a backfill, or changes since the last pull


@dataclasses.dataclass(frozen=True)
class Run:
    """Where a pull starts: its ``since`` and the checkpoint to resume after (``None``: the top)."""

    since: datetime | None
    checkpoint: str | None
    resumed: bool


@dataclasses.dataclass(frozen=True)
class PageResult:
    recorded: RecordResult  # the page's events and the removals' resubscribes
    new_optouts: int  # addresses (and scopes) the hub now holds opted out that it did not
    drift: int  # pushes queued again
    conflicts: int  # removals at the provider, recorded as unproven resubscribes


def start_run(
    session: Session, provider: str, kind: str, *, since: datetime | None, explicit: bool, now: datetime
) -> Run:
    """Begin (or resume) a pull. A pull that died resumes from its checkpoint with its own
    ``since``, unless ``explicit`` (``--since``) asks for another window. Otherwise ``since``
    is the given one if ``explicit``, else none for a backfill, else the start of the last
    pull that ended (of either kind): a first pull of changes with no history reads everything.
    """
    row = session.get(ReconcileCheckpoint, (provider, kind), with_for_update=True)
    if row is None:
        row = ReconcileCheckpoint(provider=provider, kind=kind, updated_at=now)
        session.add(row)
    if row.run_started_at is not None and (not explicit or row.run_since == since):
        return Run(row.run_since, row.checkpoint, True)
    if not explicit and kind == CHANGES:
        ended = [
            t
            for t in session.scalars(
                select(ReconcileCheckpoint.last_success_at).where(ReconcileCheckpoint.provider == provider)
            )
            if t is not None
        ]
        since = max(ended, default=None)
    elif not explicit:
        since = None
    row.run_started_at, row.run_since, row.checkpoint, row.updated_at = now, since, None, now
    return Run(since, None, False)


def finish_run(session: Session, provider: str, kind: str, *, now: datetime) -> None:
    """The pull ended: its start becomes the next pull's ``since``."""
    session.execute(
        update(ReconcileCheckpoint)
        .where(ReconcileCheckpoint.provider == provider, ReconcileCheckpoint.kind == kind)
        .values(
            last_success_at=ReconcileCheckpoint.run_started_at,
            run_started_at=None,
            run_since=None,
            checkpoint=None,
            updated_at=now,
        )
    )


def store_page(
    session: Session, provider: str, kind: str, page: PullPage, policy: StorePolicy, *, now: datetime
) -> PageResult:
    """Apply one pulled page and move the checkpoint past it, in the caller's transaction."""
    events = list(page.events)
    mailable, scope = list(page.mailable), page.scope
    if page.snapshot is not None:
        scope = page.snapshot.scope
        added = _replace_snapshot(session, provider, page.snapshot.name, page.snapshot.emails)
        events = [e for e in events if address_key(e.email) in added]
        present = {address_key(e) for e in page.snapshot.emails}
        mailable = [email for email in _held(session, scope) if address_key(email) not in present]
    events = _without_echoes(session, provider, events)
    removals, drift = _removals_and_drift(session, provider, scope, mailable, now=now)
    events += [
        OptOutEvent(
            email=email,
            kind=Kind.RESUBSCRIBE,
            source=Source(provider),
            scope=scope,
            verification=Verification.PULL,
            provider_event_id=pull_event_id("pull-removed", provider, scope, address_key(email), now.isoformat()),
            occurred_at=now,
            received_at=now,
            reason="no longer suppressed at the provider (reconciliation)",
            metadata={"actor": Actor.AUTOMATION.value},
        )
        for email in removals
    ]
    recorded = record_events(session, events, policy, now=now)
    session.execute(
        update(ReconcileCheckpoint)
        .where(ReconcileCheckpoint.provider == provider, ReconcileCheckpoint.kind == kind)
        .values(checkpoint=page.checkpoint, updated_at=now)
    )
    return PageResult(recorded, recorded.changed, drift, len(removals))


def _replace_snapshot(session: Session, provider: str, name: str, emails: Sequence[str]) -> set[str]:
    """Store a list's new snapshot; answer the address keys it did not hold before."""
    table = ReconcileSnapshot.__table__
    old = set(
        session.scalars(
            select(ReconcileSnapshot.email_key).where(
                ReconcileSnapshot.provider == provider, ReconcileSnapshot.name == name
            )
        )
    )
    new = {address_key(e): e for e in emails}
    gone = list(old - new.keys())
    for part in chunks(gone, 1000):
        session.execute(
            delete(ReconcileSnapshot).where(
                ReconcileSnapshot.provider == provider,
                ReconcileSnapshot.name == name,
                ReconcileSnapshot.email_key.in_(part),
            )
        )
    added = new.keys() - old
    execute_many(
        session, table, ("provider", "name", "email_key", "email"), [(provider, name, k, new[k]) for k in added]
    )
    return set(added)


def _without_echoes(session: Session, provider: str, events: list[OptOutEvent]) -> list[OptOutEvent]:
    """``events`` without the hub's own pushes read back: opt-outs the hub holds at that scope
    and has pushed to ``provider`` (a settled push). Anything else is kept."""
    keys = list({address_key(e.email) for e in events if e.kind is not Kind.RESUBSCRIBE})
    if not keys:
        return events
    wanted = values_table(session, keys)
    held = set(
        session.scalars(
            select(Suppression.email_key)
            .join_from(wanted, Suppression, Suppression.email_key == wanted.c.value)
            .where(Suppression.suppressed, Suppression.source != provider)
        )
    )
    if not held:
        return events
    pushed = {
        (p.email_key, p.scope)
        for p in _pushes_to(session, provider, held)
        if p.state == "done" and p.action == "unsubscribe"
    }
    return [e for e in events if (address_key(e.email), e.scope) not in pushed]


def _held(session: Session, scope: str) -> list[str]:
    """Every address the hub holds opted out at exactly ``scope``."""
    return list(session.scalars(select(Suppression.email).where(Suppression.scope == scope, Suppression.suppressed)))


def _removals_and_drift(
    session: Session, provider: str, scope: str, mailable: Sequence[str], *, now: datetime
) -> tuple[list[str], int]:
    """Split the mailable addresses the hub holds opted out at ``scope`` into removals (to
    record) and drift (queued again here); answer the removals and the drift count."""
    if not mailable:
        return [], 0
    keys = list({address_key(e) for e in mailable})
    wanted = values_table(session, keys)
    held: dict[str, Any] = {
        s.email_key: s
        for s in session.execute(
            select(Suppression.email_key, Suppression.email, Suppression.source, Suppression.event_id)
            .join_from(wanted, Suppression, Suppression.email_key == wanted.c.value)
            .where(Suppression.scope == scope, Suppression.suppressed)
        )
    }
    if not held:
        return [], 0
    rows: dict[str, set[str]] = {}
    for p in _pushes_to(session, provider, held.keys(), scope=scope):
        rows.setdefault(p.email_key, set()).add(p.state)
    removals, requeue, fresh = [], [], []
    for key, s in held.items():
        states = rows.get(key, set())
        if "pending" in states:
            continue  # a push there is on its way
        if s.source == provider or "done" in states:
            removals.append(s.email)
        elif "dead" in states:
            requeue.append(s.email)
        else:
            fresh.append((s.event_id, provider, "unsubscribe", s.email, scope, "pending", 0, now, now, now))
    for part in chunks(requeue, 1000):
        session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.provider == provider,
                OutboxRow.scope == scope,
                OutboxRow.state == "dead",
                OutboxRow.email.in_(part),
            )
            .values(state="pending", due_at=now, attempts=0, lease_until=None, lease_owner=None)
        )
    execute_many(session, OutboxRow.__table__, OUTBOX_COLUMNS, fresh)
    return removals, len(requeue) + len(fresh)


def _pushes_to(
    session: Session, provider: str, email_keys: Collection[str], *, scope: str | None = None
) -> Sequence[Row[Any]]:
    """Every push to ``provider`` (at ``scope``, when given) of the addresses ``email_keys``,
    queued or compacted, found through their events' address (``email_key``, ``scope``,
    ``action``, ``state``)."""
    wanted = values_table(session, list(email_keys))
    theirs = select(Event.id).join_from(wanted, Event, Event.email_key == wanted.c.value)
    found = pushes(theirs)
    stmt = (
        select(Event.email_key, found.c.scope, found.c.action, found.c.state)
        .join_from(found, Event, Event.id == found.c.event_id)
        .where(found.c.provider == provider)
    )
    if scope is not None:
        stmt = stmt.where(found.c.scope == scope)
    return session.execute(stmt).all()

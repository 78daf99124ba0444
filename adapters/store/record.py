"""Recording events: the append-only log, the current state it implies, and the pushes it queues.

Every function takes the caller's unit of work (a :class:`~sqlalchemy.orm.Session` inside a
``begin()`` block) and never commits: the edge that received the request owns the
transaction, so "stored" and "acknowledged" mean the same thing (README "How it fits
together"). Reading the state is :mod:`adapters.store.queries`.

State rules:
- an opt-out (unsubscribe, complaint; a bounce only when the policy says so) suppresses the
  address at the event's scope;
- only a ``resubscribe`` undoes an opt-out: one that occurred after it (events are ordered by
  :func:`adapters.consent.effective_time`, then id) and is proven to come from the person
  (:func:`adapters.consent.may_lift`); any other is stored, listed in ``consent_conflicts``,
  and a provider that re-added the person gets the opt-out pushed back; an import never
  carries one;
- a global opt-out wins over any topic state, but the states are kept apart: a topic opt-out
  made while a global one holds is pushed to the topic's providers, and lifting the global
  opt-out leaves it in force (and queues each topic's own state again);
- an erased address (README "Erasure") is never re-added: no resubscribe lifts anything of
  it (each is a conflict, pushed back to a provider that sent it), while its new opt-outs
  are recorded as the person contacting the hub again;
- complaints and hard bounces are kept per address in ``delivery_blocks`` (transactional
  checks); a resubscribe that lifts the global opt-out clears them.

Pushes: an outbox row asks a provider to converge (address, scope) to the current state.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from adapters.config import Config
from adapters.consent import PROVIDER_SOURCES, actor_of, effective_time, may_lift
from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, topic_scope
from adapters.store.address_locks import lock_addresses
from adapters.store.bulk import driver_rows, execute_many, insert_new, parse_time, values_table
from adapters.store.changes import SubscriberFilter, record_changes
from adapters.store.erased import erased_among
from adapters.store.models import (
    REASON_KEY_CHARS,
    ConsentConflict,
    DeliveryBlock,
    Event,
    EventCount,
    Evidence,
    OutboxRow,
    Suppression,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StorePolicy:
    """What recording an event implies: which bounces suppress, and where changes are pushed.

    ``push_targets(scope)`` lists the enabled providers that can represent ``scope`` (every
    enabled provider for the global scope; those with a mapping for a topic).
    ``person_providers``: the providers whose reports of the person's own resubscribe may lift
    that provider's opt-outs (:func:`adapters.consent.may_lift`).
    ``erasure_key``: keys the hashes of erased addresses (``None``: erasure not configured).
    ``transactional_bounces``: whether a hard bounce stops transactional mail. ``subscribers``: who gets
    each change (:mod:`adapters.store.changes`).
    """

    suppress_bounces: bool = False
    push_targets: Callable[[str], Sequence[str]] = lambda scope: ()
    person_providers: frozenset[str] = PROVIDER_SOURCES
    erasure_key: bytes | None = dataclasses.field(default=None, repr=False)
    transactional_bounces: bool = False
    subscribers: tuple[SubscriberFilter, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> StorePolicy:
        enabled = config.providers.enabled()
        targets: dict[str, tuple[str, ...]] = {GLOBAL_SCOPE: enabled}
        for topic in config.topics:
            targets[topic_scope(topic.name)] = tuple(p for p in enabled if topic.mapping(p) is not None)
        return cls(
            suppress_bounces=config.inbound.suppress_hard_bounces,
            push_targets=lambda scope: targets.get(scope, ()),
            person_providers=frozenset(config.consent.provider_resubscribes),
            erasure_key=config.security.erasure_key.reveal().encode() if config.security.erasure_key else None,
            transactional_bounces=config.compliance.transactional_suppress_hard_bounces,
            subscribers=tuple(SubscriberFilter(s.url, frozenset(s.events)) for s in config.subscribers),
        )


@dataclasses.dataclass(frozen=True)
class RecordResult:
    new: int  # events stored (a provider's retried event is not new)
    event_ids: tuple[int, ...]  # ids of the new events, in storage order
    changed: int  # (address, scope) states that turned suppressed or unsuppressed
    pushes: int  # outbox rows written
    counts: tuple[tuple[str, str, int], ...] = ()  # (source, kind, new events)


_EVENT_COLUMNS = (
    "email",
    "email_key",
    "kind",
    "scope",
    "source",
    "verification",
    "provider_event_id",
    "occurred_at",
    "received_at",
    "reason",
    "campaign",
    "evidence_id",
    "meta",
    "actor",
)
_EVIDENCE_AT = _EVENT_COLUMNS.index("evidence_id")
_RETURNED = (
    "id",
    "email",
    "email_key",
    "kind",
    "scope",
    "source",
    "occurred_at",
    "received_at",
    "reason",
    "verification",
    "actor",
)
_SUPPRESSION_COLUMNS = (
    "email_key",
    "scope",
    "email",
    "suppressed",
    "kind",
    "source",
    "reason",
    "first_at",
    "last_at",
    "event_id",
)
OUTBOX_COLUMNS = (  # the values of an outbox row a fold writes; reconciliation queues the same
    "event_id",
    "provider",
    "action",
    "email",
    "scope",
    "state",
    "attempts",
    "due_at",
    "received_at",
    "created_at",
)


def record_events(
    session: Session,
    events: Sequence[OptOutEvent],
    policy: StorePolicy,
    *,
    now: datetime,
    evidence_id: int | None = None,
    evidence: Evidence | None = None,
) -> RecordResult:
    """Store a batch of events and apply them to the current state and the outbox.

    ``evidence_id`` is given to every event that has none (one delivery's stored payload).
    Or pass the unsaved ``evidence`` row itself: it is added once the rows are encoded, so on
    SQLite that Python work runs before the transaction takes the database's write lock.

    Duplicates of a stored (source, provider_event_id) are skipped by the database's unique
    key on (email_key, source, provider_event_id) (``ON CONFLICT DO NOTHING``; an event id
    names one event for one address), so concurrent retries of one delivery count once.
    """
    if not events and evidence is None:
        return RecordResult(0, (), 0, 0)
    rows = []
    for ev in events:
        if ev.kind is Kind.RESUBSCRIBE and ev.source is Source.IMPORT:
            raise PayloadError("an import cannot resubscribe anyone")
        received = ev.received_at or now
        rows.append(
            [
                ev.email,
                ev.email.lower(),
                ev.kind.value,
                ev.scope,
                ev.source.value,
                ev.verification.value,
                ev.provider_event_id,
                ev.occurred_at or received,
                received,
                ev.reason,
                ev.campaign,
                ev.evidence_id or evidence_id,
                ev.metadata or None,
                actor_of(ev).value,
            ]
        )
    table = Event.__table__
    prepared = (
        driver_rows(session, table, _EVENT_COLUMNS, rows) if session.get_bind().dialect.name == "sqlite" else None
    )
    if evidence is not None:
        session.add(evidence)
        session.flush()  # the transaction's first write
        evidence_id = evidence.id
        for row in itertools.chain(rows, prepared or ()):
            if row[_EVIDENCE_AT] is None:
                row[_EVIDENCE_AT] = evidence_id
    if not rows:
        return RecordResult(0, (), 0, 0)
    new_rows = insert_new(
        session,
        table,
        _EVENT_COLUMNS,
        rows,
        unique=("email_key", "source", "provider_event_id"),
        returning=_RETURNED,
        prepared=prepared,
    )
    stored = []
    times: dict[tuple[Any, Any], tuple[datetime, datetime]] = {}  # a batch shares few distinct times
    for r in new_rows:
        pair = times.get((r[6], r[7]))
        if pair is None:
            received = parse_time(r[7])
            pair = times[(r[6], r[7])] = (effective_time(parse_time(r[6]), received), received)
        stored.append(_Stored(r[0], r[1], r[2], r[3], r[4], r[5], *pair, r[8], r[9], r[10]))
    if not stored:
        return RecordResult(0, (), 0, 0)
    stored.sort(key=lambda r: (r.effective_at, r.id))
    changed, pushes = _apply(session, stored, policy, now)
    _count(session, stored)
    counts = Counter((r.source, r.kind) for r in stored)
    return RecordResult(
        len(stored), tuple(r.id for r in stored), changed, pushes, tuple((s, k, n) for (s, k), n in counts.items())
    )


class _Stored(NamedTuple):
    id: int
    email: str
    email_key: str
    kind: str
    scope: str
    source: str
    effective_at: datetime  # adapters.consent.effective_time
    received_at: datetime
    reason: str | None
    verification: str
    actor: str


def _apply(session: Session, stored: Sequence[_Stored], policy: StorePolicy, now: datetime) -> tuple[int, int]:
    """Fold new events (in order of occurrence) into ``suppressions`` and queue pushes for the
    states that changed."""
    table = Suppression.__table__
    keys = list({r.email_key for r in stored})
    lock_addresses(session, keys)
    current: dict[tuple[str, str], list[Any]] = {}
    topics_of: dict[str, list[str]] = {}  # email_key -> its topic scopes with a state
    wanted = values_table(session, keys)
    for s in session.connection().execute(
        select(*(table.c[n] for n in _SUPPRESSION_COLUMNS)).join_from(
            wanted, table, table.c.email_key == wanted.c.value
        )
    ):
        current[(s.email_key, s.scope)] = list(s)
        if s.scope != GLOBAL_SCOPE:
            topics_of.setdefault(s.email_key, []).append(s.scope)
    dirty: dict[tuple[str, str], list[Any]] = {}
    transitions = 0
    outbox: list[tuple[Any, ...]] = []
    resubscribe, bounce = Kind.RESUBSCRIBE.value, Kind.BOUNCE.value
    targets: dict[str, Sequence[str]] = {}

    def queue(r: _Stored, scope: str, action: str, *, echo: bool = False) -> None:
        providers = targets.get(scope)
        if providers is None:
            providers = targets[scope] = policy.push_targets(scope)
        for provider in providers:
            if echo or provider != r.source:  # never echo a provider's own event back to it
                outbox.append((r.id, provider, action, r.email, scope, "pending", 0, now, r.received_at, now))

    def queue_back(r: _Stored) -> None:
        if r.source in policy.push_targets(r.scope):
            outbox.append((r.id, r.source, "unsubscribe", r.email, r.scope, "pending", 0, now, r.received_at, now))

    conflicts: list[dict[str, Any]] = []
    erased = erased_among(session, policy.erasure_key, keys)
    blocks = _Blocks()
    changes: list[tuple[int, bool]] = []  # adapters.store.changes: one per transition
    for r in stored:
        key = (r.email_key, r.scope)
        state = current.get(
            key
        )  # [email_key, scope, email, suppressed, kind, source, reason, first_at, last_at, event_id]
        lifted_event_id = None
        if r.kind in _BLOCKING:
            blocks.add(r)
        if r.kind == resubscribe and r.email_key in erased:
            conflicts.append({"event_id": r.id, "opt_out_source": ERASURE, "created_at": now})
            if r.source in PROVIDER_SOURCES:
                queue_back(r)
            continue
        if r.kind == resubscribe:
            holding = _holding(state, current.get((r.email_key, GLOBAL_SCOPE)))
            if holding is None:
                continue  # no opt-out to lift
            older = holding is state and state[8] > r.effective_at
            proven = may_lift(
                source=r.source,
                verification=r.verification,
                actor=r.actor,
                reason=r.reason,
                opt_out_source=holding[5],
                person_providers=policy.person_providers,
            )
            if holding is not state or older or not proven:
                if not proven:
                    conflicts.append({"event_id": r.id, "opt_out_source": holding[5], "created_at": now})
                if r.source in PROVIDER_SOURCES and (older or not proven):
                    queue_back(r)  # the provider re-added someone whose opt-out holds
                continue
            lifted_event_id = state[9]
            if r.scope == GLOBAL_SCOPE:
                blocks.clear(r.email_key)
            state[3:7] = [False, r.kind, r.source, r.reason]
            state[8:10] = [r.effective_at, r.id]
        else:
            if r.kind == bounce and not policy.suppress_bounces:
                continue
            if state is not None and state[3]:
                if r.effective_at > state[8]:
                    state[8] = r.effective_at
                    dirty[key] = state
                continue
            if state is None and r.scope != GLOBAL_SCOPE:
                topics_of.setdefault(r.email_key, []).append(r.scope)
            first = state[7] if state is not None else r.effective_at
            state = current[key] = [
                r.email_key,
                r.scope,
                r.email,
                True,
                r.kind,
                r.source,
                r.reason,
                first,
                r.effective_at,
                r.id,
            ]
        dirty[key] = state
        transitions += 1
        changes.append((r.id, state[3]))
        if r.scope == GLOBAL_SCOPE:
            queue(r, GLOBAL_SCOPE, "resubscribe" if lifted_event_id is not None else "unsubscribe")
            if lifted_event_id is not None:
                _queue_topics_after_global_lift(r, current, topics_of.get(r.email_key, ()), lifted_event_id, queue)
            continue
        glob = current.get((r.email_key, GLOBAL_SCOPE))
        if lifted_event_id is not None and glob is not None and glob[3]:
            continue  # the global opt-out still holds: pushed when it is lifted
        queue(r, r.scope, "resubscribe" if lifted_event_id is not None else "unsubscribe")
    execute_many(session, table, _SUPPRESSION_COLUMNS, list(dirty.values()), upsert_on=("email_key", "scope"))
    execute_many(session, OutboxRow.__table__, OUTBOX_COLUMNS, outbox)
    if conflicts:
        session.execute(insert(ConsentConflict), conflicts)
    blocks.write(session)
    record_changes(session, changes, policy.subscribers, now=now)
    return transitions, len(outbox)


ERASURE = "erasure"  # the opt_out_source of a conflict with an erased address
_BLOCKING = frozenset({Kind.COMPLAINT.value, Kind.BOUNCE.value})


class _Blocks:
    """The ``delivery_blocks`` changes of a batch, in event order: complaints and bounces
    add, a lifted global opt-out clears the address's."""

    def __init__(self) -> None:
        self.spans: dict[tuple[str, str], list[datetime]] = {}  # (email_key, kind) -> [first, last]
        self.cleared: set[str] = set()

    def add(self, r: _Stored) -> None:
        span = self.spans.setdefault((r.email_key, r.kind), [r.effective_at, r.effective_at])
        span[0], span[1] = min(span[0], r.effective_at), max(span[1], r.effective_at)

    def clear(self, email_key: str) -> None:
        self.cleared.add(email_key)
        for key in [k for k in self.spans if k[0] == email_key]:
            del self.spans[key]

    def write(self, session: Session) -> None:
        table = DeliveryBlock.__table__
        if self.cleared:
            session.execute(delete(table).where(table.c.email_key.in_(sorted(self.cleared))))
        rows = [(key, kind, first, last) for (key, kind), (first, last) in sorted(self.spans.items())]
        execute_many(
            session,
            table,
            ("email_key", "kind", "first_at", "last_at"),
            rows,
            upsert_on=("email_key", "kind"),
            merge={"first_at": "least", "last_at": "greatest"},
        )


def _holding(state: list[Any] | None, global_state: list[Any] | None) -> list[Any] | None:
    """The opt-out in force for a scope: its own, else the global one, else ``None``."""
    if state is not None and state[3]:
        return state
    return global_state if global_state is not None and global_state[3] else None


def _queue_topics_after_global_lift(
    r: _Stored,
    current: dict[tuple[str, str], list[Any]],
    topic_scopes: Sequence[str],
    lifted_event_id: int,
    queue: Callable[..., None],
) -> None:
    """When a global opt-out is lifted, queue each topic's own state to its providers.

    A topic opt-out stays in force (and must be what its list, group or subscription holds,
    even where the provider's global resubscribe touched it); a topic resubscribed while the
    global opt-out held (event stored after it) was not pushed then and is now.
    """
    for scope in topic_scopes:
        topic = current[(r.email_key, scope)]
        if topic[3]:
            queue(r, scope, "unsubscribe", echo=True)
        elif topic[9] > lifted_event_id:
            queue(r, scope, "resubscribe", echo=True)


def _count(session: Session, stored: Sequence[_Stored]) -> None:
    """Add new events to ``event_counts`` (:class:`~adapters.store.models.EventCount`).

    Last in ``record_events`` (callers commit soon after), keys in sorted order: concurrent
    PostgreSQL transactions that touch the same day's counters wait for each other only until
    the first commits, and always lock them in the same order (no deadlock).
    """
    days: dict[datetime, str] = {}
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for r in stored:
        day = days.get(r.received_at)
        if day is None:
            day = days[r.received_at] = r.received_at.astimezone(UTC).date().isoformat()
        counts[(day, r.source, r.kind, (r.reason or "")[:REASON_KEY_CHARS])] += 1
    execute_many(
        session,
        EventCount.__table__,
        ("day", "source", "kind", "reason", "n"),
        [(*key, n) for key, n in sorted(counts.items())],
        upsert_on=("day", "source", "kind", "reason"),
        merge={"n": "sum"},
    )

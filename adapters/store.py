"""The opt-out store: recording events, current state, bulk checks, export.

Every function takes the caller's unit of work (a :class:`~sqlalchemy.orm.Session` inside a
``begin()`` block) and never commits: the edge that received the request owns the
transaction, so "stored" and "acknowledged" mean the same thing (contract §6).

State rules:
- an opt-out (unsubscribe, complaint; a bounce only when the policy says so) suppresses the
  address at the event's scope;
- only a ``resubscribe`` undoes an opt-out, and only one that occurred after it; an import
  never carries one;
- a global opt-out wins over any topic state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .addresses import normalize_address
from .config import Config
from .errors import AddressError, PayloadError
from .events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, topic_scope
from .models import Event, OutboxRow, Suppression

log = logging.getLogger(__name__)

CHECK_CHUNK = 20_000
PUSH_ACTIONS = {Kind.UNSUBSCRIBE: "unsubscribe", Kind.COMPLAINT: "unsubscribe", Kind.BOUNCE: "unsubscribe", Kind.RESUBSCRIBE: "resubscribe"}
PROVIDER_SOURCES = frozenset({Source.MAILCHIMP, Source.SENDGRID, Source.HUBSPOT})


@dataclasses.dataclass(frozen=True)
class StorePolicy:
    """What recording an event implies: which bounces suppress, and where changes are pushed.

    ``push_targets(scope)`` lists the enabled providers that can represent ``scope`` (every
    enabled provider for the global scope; those with a mapping for a topic).
    """

    suppress_bounces: bool = False
    push_targets: Callable[[str], Sequence[str]] = lambda scope: ()

    @classmethod
    def from_config(cls, config: Config) -> "StorePolicy":
        enabled = config.providers.enabled()
        attrs = {"mailchimp": "mailchimp_list", "sendgrid": "sendgrid_group", "hubspot": "hubspot_subscription"}
        targets: dict[str, tuple[str, ...]] = {GLOBAL_SCOPE: enabled}
        for topic in config.topics:
            targets[topic_scope(topic.name)] = tuple(p for p in enabled if getattr(topic, attrs[p]) is not None)
        return cls(suppress_bounces=config.inbound.suppress_hard_bounces, push_targets=lambda scope: targets.get(scope, ()))


@dataclasses.dataclass(frozen=True)
class RecordResult:
    new: int  # events stored (a provider's retried event is not new)
    event_ids: tuple[int, ...]  # ids of the new events, in storage order
    changed: int  # (address, scope) states that turned suppressed or unsuppressed
    pushes: int  # outbox rows written
    counts: tuple[tuple[str, str, int], ...] = ()  # (source, kind, new events)


def _insert(session: Session, table: Any) -> Any:
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


_RETURNED = (Event.id, Event.email, Event.email_key, Event.kind, Event.scope, Event.source, Event.occurred_at, Event.received_at, Event.reason)


def record_events(session: Session, events: Sequence[OptOutEvent], policy: StorePolicy, *, now: datetime) -> RecordResult:
    """Store a batch of events and apply them to the current state and the outbox.

    Duplicates of a stored (source, provider_event_id) are skipped by the database's unique
    key (``ON CONFLICT DO NOTHING``), so concurrent retries of one delivery count once.
    """
    if not events:
        return RecordResult(0, (), 0, 0)
    rows = []
    for ev in events:
        if ev.kind is Kind.RESUBSCRIBE and ev.source is Source.IMPORT:
            raise PayloadError("an import cannot resubscribe anyone")
        rows.append(
            {
                "email": ev.email,
                "email_key": ev.email.lower(),
                "kind": ev.kind.value,
                "scope": ev.scope,
                "source": ev.source.value,
                "verification": ev.verification.value,
                "provider_event_id": ev.provider_event_id,
                "occurred_at": ev.occurred_at or ev.received_at or now,
                "received_at": ev.received_at or now,
                "reason": ev.reason,
                "campaign": ev.campaign,
                "evidence_id": ev.evidence_id,
                "meta": dict(ev.metadata) if ev.metadata else None,
            }
        )
    stmt = _insert(session, Event).on_conflict_do_nothing(index_elements=["source", "provider_event_id"]).returning(*_RETURNED)
    stored = session.execute(stmt, rows).all() if len(rows) > 1 else session.execute(stmt.values(rows[0])).all()
    if not stored:
        return RecordResult(0, (), 0, 0)
    changed, pushes = _apply(session, stored, policy, now)
    counts = Counter((r.source, r.kind) for r in stored)
    return RecordResult(len(stored), tuple(r.id for r in stored), changed, pushes, tuple((s, k, n) for (s, k), n in counts.items()))


def _apply(session: Session, stored: Sequence[Any], policy: StorePolicy, now: datetime) -> tuple[int, int]:
    """Fold new events into ``suppressions`` and queue pushes for the states that changed."""
    keys = {r.email_key for r in stored}
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for chunk in _chunks(sorted(keys), CHECK_CHUNK):
        for s in session.execute(select(Suppression.__table__).where(Suppression.email_key.in_(chunk))).mappings():
            current[(s["email_key"], s["scope"])] = dict(s)
    dirty: dict[tuple[str, str], dict[str, Any]] = {}
    transitions = 0
    outbox: list[dict[str, Any]] = []
    for r in sorted(stored, key=lambda r: (r.occurred_at, r.id)):
        kind = Kind(r.kind)
        key = (r.email_key, r.scope)
        state = current.get(key)
        if kind is Kind.RESUBSCRIBE:
            if state is None or not state["suppressed"] or state["last_at"] > r.occurred_at:
                continue
            state.update(suppressed=False, kind=r.kind, source=r.source, reason=r.reason, last_at=r.occurred_at, event_id=r.id)
        else:
            if kind is Kind.BOUNCE and not policy.suppress_bounces:
                continue
            if state is not None and state["suppressed"]:
                if r.occurred_at > state["last_at"]:
                    state["last_at"] = r.occurred_at
                    dirty[key] = state
                continue
            first = state["first_at"] if state is not None else r.occurred_at
            state = {"email_key": r.email_key, "scope": r.scope, "email": r.email, "suppressed": True, "kind": r.kind, "source": r.source, "reason": r.reason, "first_at": first, "last_at": r.occurred_at, "event_id": r.id}
            current[key] = state
        dirty[key] = state
        transitions += 1
        globally_off = r.scope != GLOBAL_SCOPE and current.get((r.email_key, GLOBAL_SCOPE), {}).get("suppressed")
        if globally_off and kind is not Kind.RESUBSCRIBE:
            continue  # the global opt-out was pushed already and covers this topic
        for provider in policy.push_targets(r.scope):
            if provider == r.source:
                continue  # never echo a provider's own event back to it
            outbox.append({"event_id": r.id, "provider": provider, "action": PUSH_ACTIONS[kind], "email": r.email, "scope": r.scope, "state": "pending", "attempts": 0, "due_at": now, "received_at": r.received_at, "created_at": now})
    if dirty:
        stmt = _insert(session, Suppression)
        cols = ("email", "suppressed", "kind", "source", "reason", "first_at", "last_at", "event_id")
        stmt = stmt.on_conflict_do_update(index_elements=["email_key", "scope"], set_={c: stmt.excluded[c] for c in cols})
        session.execute(stmt, list(dirty.values()))
    if outbox:
        session.execute(_insert(session, OutboxRow), outbox)
    return transitions, len(outbox)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "scope": e.scope,
        "source": e.source,
        "verification": e.verification,
        "provider_event_id": e.provider_event_id,
        "occurred_at": e.occurred_at.isoformat(),
        "received_at": e.received_at.isoformat(),
        "reason": e.reason,
        "campaign": e.campaign,
        "evidence_id": e.evidence_id,
    }


def address_state(session: Session, email: str) -> dict[str, Any]:
    """The contract's status JSON: ``{"email", "suppressed", "scopes", "events"}``.

    ``scopes`` lists the scopes at which the address is suppressed; ``suppressed`` is true
    when there is any. Raises :class:`AddressError` for an invalid address.
    """
    address = normalize_address(email)
    sups = session.scalars(select(Suppression).where(Suppression.email_key == address.key, Suppression.suppressed.is_(True)).order_by(Suppression.scope)).all()
    events = session.scalars(select(Event).where(Event.email_key == address.key).order_by(Event.occurred_at, Event.id)).all()
    display = sups[0].email if sups else (events[-1].email if events else address.email)
    scopes = [s.scope for s in sups]
    return {"email": display, "suppressed": bool(scopes), "scopes": scopes, "events": [_event_json(e) for e in events]}


def is_suppressed(session: Session, email: str, topic: str | None = None) -> bool:
    return bool(check_addresses(session, [email], topic=topic).suppressed)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    suppressed: list[str]  # the inputs (as given) that must not be mailed
    invalid: list[str]  # inputs that are not addresses


def check_addresses(session: Session, emails: Iterable[str], *, topic: str | None = None) -> CheckResult:
    """Which of many addresses are suppressed, globally or (with ``topic``) for that topic."""
    by_key: dict[str, list[str]] = {}
    invalid: list[str] = []
    for raw in emails:
        try:
            by_key.setdefault(normalize_address(raw).key, []).append(raw)
        except AddressError:
            invalid.append(raw)
    scopes = [GLOBAL_SCOPE] if topic is None else [GLOBAL_SCOPE, topic_scope(topic)]
    hits: set[str] = set()
    keys = list(by_key)
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(keys, max(len(keys), 1) if postgres else CHECK_CHUNK):
        # PostgreSQL takes the whole list as one array parameter; SQLite as bound IN lists.
        cond = Suppression.email_key == any_(bindparam("keys", list(chunk), type_=postgresql.ARRAY(String))) if postgres else Suppression.email_key.in_(chunk)
        stmt = select(Suppression.email_key).where(cond, Suppression.scope.in_(scopes), Suppression.suppressed.is_(True))
        hits.update(session.scalars(stmt))
    suppressed = [raw for key in keys if key in hits for raw in by_key[key]]
    return CheckResult(suppressed, invalid)


def export_suppressions(session: Session, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every suppressed (address, scope) with kind, source and first/last time, oldest first."""
    stmt = select(Suppression).where(Suppression.suppressed.is_(True))
    if since is not None:
        stmt = stmt.where(Suppression.last_at >= since)
    result = session.scalars(stmt.order_by(Suppression.first_at, Suppression.email_key).execution_options(yield_per=5000))
    try:
        for s in result:
            yield {"email": s.email, "scope": s.scope, "kind": s.kind, "source": s.source, "reason": s.reason, "first_at": s.first_at.isoformat(), "last_at": s.last_at.isoformat()}
    finally:
        result.close()  # a server-side cursor on PostgreSQL, also when the caller stops early


def suppressed_keys(session: Session, keys: Sequence[str], scope: str) -> set[str]:
    """The subset of ``keys`` already suppressed at ``scope`` (or globally)."""
    found: set[str] = set()
    for chunk in _chunks(list(keys), CHECK_CHUNK):
        stmt = select(Suppression.email_key).where(Suppression.email_key.in_(chunk), Suppression.scope.in_({GLOBAL_SCOPE, scope}), Suppression.suppressed.is_(True))
        found.update(session.scalars(stmt))
    return found

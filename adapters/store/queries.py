"""Reading the opt-out store: one address's state, bulk checks, export."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.addresses import address_key, normalize_address
from adapters.errors import AddressError
from adapters.events import GLOBAL_SCOPE, topic_scope
from adapters.store.bulk import chunks, values_table
from adapters.store.models import Event, Suppression

CHECK_CHUNK = 100_000  # addresses per statement (one JSON or array parameter each)


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "scope": e.scope,
        "source": e.source,
        "verification": e.verification,
        "actor": e.actor,  # who acted (README "Consent"); null for events stored before it was kept
        "admin": _admin_name(e),  # the admin who recorded or approved it (README "Named admins")
        "provider_event_id": e.provider_event_id,
        "occurred_at": e.occurred_at.isoformat(),
        "received_at": e.received_at.isoformat(),
        "reason": e.reason,
        "campaign": e.campaign,
        "evidence_id": e.evidence_id,
    }


def _admin_name(e: Event) -> str | None:
    meta = e.meta or {}
    name = meta.get("admin") or meta.get("approved_by")
    return name if isinstance(name, str) else None


def address_state(session: Session, email: str) -> dict[str, Any]:
    """The status JSON of ``optout-hub status`` and the API: ``{"email", "suppressed", "scopes", "events"}``.

    ``scopes`` lists the scopes at which the address is suppressed; ``suppressed`` is true
    when there is any. Raises :class:`AddressError` for an invalid address.
    """
    address = normalize_address(email)
    sups = session.scalars(
        select(Suppression)
        .where(Suppression.email_key == address.key, Suppression.suppressed.is_(True))
        .order_by(Suppression.scope)
    ).all()
    events = session.scalars(
        select(Event).where(Event.email_key == address.key).order_by(Event.occurred_at, Event.id)
    ).all()
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
    """Which of many addresses are suppressed, globally or (with ``topic``) for that topic;
    both lists keep the inputs as given, in input order."""
    pairs: list[tuple[str, str]] = []
    invalid: list[str] = []
    for raw in emails:
        try:
            pairs.append((raw, address_key(raw)))
        except AddressError:
            invalid.append(raw)
    scopes = [GLOBAL_SCOPE] if topic is None else [GLOBAL_SCOPE, topic_scope(topic)]
    hits: set[str] = set()
    keys = list({key for _, key in pairs})
    for chunk in chunks(keys, CHECK_CHUNK):
        wanted = values_table(session, chunk)
        stmt = (
            select(Suppression.email_key)
            .join_from(wanted, Suppression, Suppression.email_key == wanted.c.value)
            .where(Suppression.scope.in_(scopes), Suppression.suppressed.is_(True))
        )
        hits.update(session.connection().execute(stmt).scalars().all())  # Core rows, fetched at once
    suppressed = [raw for raw, key in pairs if key in hits]
    return CheckResult(suppressed, invalid)


def export_suppressions(session: Session, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every suppressed (address, scope) with kind, source and first/last time, oldest first."""
    stmt = select(Suppression).where(Suppression.suppressed.is_(True))
    if since is not None:
        stmt = stmt.where(Suppression.last_at >= since)
    result = session.scalars(
        stmt.order_by(Suppression.first_at, Suppression.email_key).execution_options(yield_per=5000)
    )
    try:
        for s in result:
            yield {
                "email": s.email,
                "scope": s.scope,
                "kind": s.kind,
                "source": s.source,
                "reason": s.reason,
                "first_at": s.first_at.isoformat(),
                "last_at": s.last_at.isoformat(),
            }
    finally:
        result.close()  # a server-side cursor on PostgreSQL, also when the caller stops early

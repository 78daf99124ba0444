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
from adapters.events import GLOBAL_SCOPE, Kind, MailCategory, topic_scope
from adapters.store.bulk import chunks, values_table
from adapters.store.erased import PSEUDONYM_PREFIX, erased_among
from adapters.store.models import DeliveryBlock, Event, Suppression
from adapters.store.record import StorePolicy

CHECK_CHUNK = 100_000  # addresses per statement (one JSON or array parameter each)
NO_POLICY = StorePolicy()  # no erasure key, hard bounces allow transactional mail


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


def address_state(
    session: Session,
    email: str,
    *,
    category: MailCategory = MailCategory.MARKETING,
    policy: StorePolicy = NO_POLICY,
) -> dict[str, Any]:
    """The status JSON of ``optout-hub status`` and the API: ``{"email", "suppressed", "scopes",
    "events"}``, with ``"category"`` when not marketing and ``"erased": true`` for an erased address.

    ``scopes`` lists the scopes at which the address is suppressed for ``category``;
    ``suppressed`` is true when there is any. An erased address (README "Erasure") is
    suppressed for marketing at every scope (``"global"``), and its events stored before the
    erasure are listed without anything personal. Raises :class:`AddressError` for an invalid
    address.
    """
    address = normalize_address(email)
    erased = erased_among(session, policy.erasure_key, [address.key])
    keys = [address.key, *erased.values()]
    if category is MailCategory.TRANSACTIONAL:
        kinds = _blocking_kinds(policy)
        blocked = session.scalars(
            select(DeliveryBlock.kind).where(DeliveryBlock.email_key.in_(keys), DeliveryBlock.kind.in_(kinds))
        ).first()
        scopes = [GLOBAL_SCOPE] if blocked else []
    else:
        scopes = sorted(
            set(
                session.scalars(
                    select(Suppression.scope).where(Suppression.email_key.in_(keys), Suppression.suppressed.is_(True))
                )
            )
            | ({GLOBAL_SCOPE} if erased else set())
        )
    events = session.scalars(select(Event).where(Event.email_key.in_(keys)).order_by(Event.occurred_at, Event.id)).all()
    mine = [e for e in events if e.email_key == address.key]
    state: dict[str, Any] = {
        "email": mine[-1].email if mine else address.email,
        "suppressed": bool(scopes),
        "scopes": scopes,
        "events": [_event_json(e) for e in events],
    }
    if category is not MailCategory.MARKETING:
        state["category"] = category.value
    if erased:
        state["erased"] = True
    return state


def is_suppressed(session: Session, email: str, topic: str | None = None, *, policy: StorePolicy = NO_POLICY) -> bool:
    return bool(check_addresses(session, [email], topic=topic, policy=policy).suppressed)


def _blocking_kinds(policy: StorePolicy) -> list[str]:
    """The kinds that stop transactional mail: complaints, and hard bounces if configured."""
    return [Kind.COMPLAINT.value, Kind.BOUNCE.value] if policy.transactional_bounces else [Kind.COMPLAINT.value]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    suppressed: list[str]  # the inputs (as given) that must not be mailed
    invalid: list[str]  # inputs that are not addresses


def check_addresses(
    session: Session,
    emails: Iterable[str],
    *,
    topic: str | None = None,
    category: MailCategory = MailCategory.MARKETING,
    policy: StorePolicy = NO_POLICY,
) -> CheckResult:
    """Which of many addresses must not be mailed; both lists keep the inputs as given, in
    input order.

    Marketing: suppressed globally or (with ``topic``) for that topic, or erased.
    Transactional: a complaint, or a hard bounce when ``policy.transactional_bounces`` (also
    of an erased address, under its pseudonym); never an unsubscribe.
    """
    pairs: list[tuple[str, str]] = []
    invalid: list[str] = []
    for raw in emails:
        try:
            pairs.append((raw, address_key(raw)))
        except AddressError:
            invalid.append(raw)
    keys = list({key for _, key in pairs})
    if category is MailCategory.TRANSACTIONAL:
        hits = _transactional_hits(session, keys, policy)
    else:
        scopes = [GLOBAL_SCOPE] if topic is None else [GLOBAL_SCOPE, topic_scope(topic)]
        hits = _hits(session, Suppression, keys, Suppression.scope.in_(scopes), Suppression.suppressed.is_(True))
        hits.update(erased_among(session, policy.erasure_key, [k for k in keys if k not in hits]))
    suppressed = [raw for raw, key in pairs if key in hits]
    return CheckResult(suppressed, invalid)


def _transactional_hits(session: Session, keys: list[str], policy: StorePolicy) -> set[str]:
    kind = DeliveryBlock.kind.in_(_blocking_kinds(policy))
    hits = _hits(session, DeliveryBlock, keys, kind)
    erased = erased_among(session, policy.erasure_key, [k for k in keys if k not in hits])
    by_pseudonym = {p: k for k, p in erased.items()}
    hits.update(by_pseudonym[p] for p in _hits(session, DeliveryBlock, list(by_pseudonym), kind))
    return hits


def _hits(session: Session, model: type[Suppression] | type[DeliveryBlock], keys: list[str], *where: Any) -> set[str]:
    """The ``keys`` that have a row of ``model`` (keyed by ``email_key``) matching ``where``."""
    hits: set[str] = set()
    for chunk in chunks(keys, CHECK_CHUNK):
        wanted = values_table(session, chunk)
        stmt = select(model.email_key).join_from(wanted, model, model.email_key == wanted.c.value).where(*where)
        hits.update(session.connection().execute(stmt).scalars().all())  # Core rows, fetched at once
    return hits


def export_suppressions(session: Session, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every suppressed (address, scope) with kind, source and first/last time, oldest first
    (erased addresses are not addresses any more: they are left out)."""
    stmt = select(Suppression).where(
        Suppression.suppressed.is_(True), Suppression.email_key.not_like(f"{PSEUDONYM_PREFIX}%")
    )
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

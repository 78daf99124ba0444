"""The worker's HubSpot contact lookups: ids from webhooks become recorded events."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from adapters.errors import PayloadError, ProviderAPIError
from adapters.events import Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.providers import payloads
from adapters.providers.hubspot import MAX_BATCH_READ, PROVIDER, make_client, read_contact_emails
from adapters.store.models import PendingLookup
from adapters.store.record import RecordResult, record_events

log = logging.getLogger(__name__)


def resolve_pending_lookups(hub: Hub, http: requests.Session, *, limit: int = 1000) -> int:
    """Resolve due HubSpot contact ids to addresses and record their events.

    Claims up to ``limit`` due rows (pushing them back by the worker lease, so a crashed worker
    only delays them), reads the contacts in batches, then in one transaction records the
    resolved events and deletes their rows. Rows that could not be resolved (HubSpot down, a
    429, a contact gone or without an address) stay, with ``attempts``, ``last_error`` and a
    backed-off ``next_attempt_at``; none is dropped. Returns the number of rows resolved.
    """
    now = hub.clock()
    rows = hub.claim_due(PendingLookup, PendingLookup.provider == PROVIDER, now=now, limit=limit)
    if not rows:
        return 0
    api = make_client(hub.config, http, now=hub.clock).api
    emails: dict[str, str] = {}
    failure: ProviderAPIError | None = None
    ids = sorted({r.object_id for r in rows})
    size = max(1, min(hub.config.providers.hubspot.batch_size, MAX_BATCH_READ))
    read: set[str] = set()
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            emails.update(read_contact_emails(api, chunk))
        except ProviderAPIError as exc:
            failure = exc  # HubSpot is failing: leave the remaining ids for the next attempt
            break
        read.update(chunk)
    events: list[OptOutEvent] = []
    resolved: list[int] = []
    waiting: list[tuple[PendingLookup, str, float | None]] = []
    for row in rows:
        if failure is not None and row.object_id not in read:
            waiting.append((row, str(failure), failure.retry_after))
            continue
        try:
            events.append(_resolved_event(row, payloads.address(emails.get(row.object_id), "properties.email")))
            resolved.append(row.id)
        except PayloadError as exc:
            waiting.append((row, f"contact not found or without a usable address: {exc}", None))

    def settle(session: Session) -> RecordResult:
        result = record_events(session, events, hub.policy, now=now)
        if resolved:
            session.execute(delete(PendingLookup).where(PendingLookup.id.in_(resolved)))
        if waiting:  # ORM bulk UPDATE by primary key: one statement, many rows
            session.execute(
                update(PendingLookup),
                [
                    {
                        "id": row.id,
                        "attempts": row.attempts + 1,
                        "next_attempt_at": now + _backoff(hub, row.attempts, retry_after),
                        "last_error": error[:1000],
                    }
                    for row, error, retry_after in waiting
                ],
            )
        return result

    result = hub.record_with(settle, what="settle HubSpot lookups")
    log.info(
        "hubspot lookups: resolved=%d stored=%d waiting=%d%s",
        len(resolved),
        result.new,
        len(waiting),
        f" error={failure}" if failure else "",
    )
    return len(resolved)


def _resolved_event(row: PendingLookup, email: str) -> OptOutEvent:
    data = row.event
    return OptOutEvent(
        email=email,
        kind=Kind(data["kind"]),
        source=Source.HUBSPOT,
        scope=data["scope"],
        verification=Verification.SIGNATURE,
        provider_event_id=row.provider_event_id,
        occurred_at=datetime.fromisoformat(data["occurred_at"]) if data.get("occurred_at") else None,
        received_at=datetime.fromisoformat(data["received_at"]),
        reason=data.get("reason"),
        evidence_id=row.evidence_id,
        metadata=data.get("metadata"),
    )


def _backoff(hub: Hub, attempts: int, retry_after: float | None) -> timedelta:
    return timedelta(seconds=max(hub.config.worker.retry_delay(attempts + 1), retry_after or 0))

"""The review queue: inbound messages the classifier could not decide, waiting for an admin.

The SMTP side stores them as ``evidence`` rows (``channel="smtp"``, ``state="review"``) whose
``result`` holds the candidate ``address`` (or null), ``scope``, ``verification``,
``campaign``, ``reason``, ``detail`` and ``named`` (other people's addresses the request
names: "take my colleague erin@… off"). Approving one records the opt-out of the address the
admin chose, explicitly, idempotently (``provider_event_id = "smtp:<id>"``); rejecting one
only closes it. Either decision is taken once (the state change is guarded by the current
state) and records the deciding admin's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, validate_scope
from adapters.store.models import Evidence
from adapters.store.record import RecordResult, StorePolicy, record_events

REVIEW, APPROVED, REJECTED = "review", "approved", "rejected"
APPROVED_REASON = "approved by admin"


def review_items(session: Session, *, limit: int = 50) -> Sequence[Evidence]:
    """The oldest undecided items first."""
    stmt = (
        select(Evidence)
        .where(Evidence.channel == "smtp", Evidence.state == REVIEW)
        .order_by(Evidence.received_at, Evidence.id)
        .limit(limit)
    )
    return session.scalars(stmt).all()


def candidates(row: Evidence) -> tuple[str | None, list[str]]:
    """The requester and the other addresses a review item names (each one offered apart)."""
    result = row.result or {}
    named = result.get("named")
    return result.get("address"), [a for a in named if isinstance(a, str)] if isinstance(named, list) else []


def _decide(session: Session, evidence_id: int, state: str, now: datetime, admin: str) -> Evidence:
    """Move an item out of review, or :class:`PayloadError` if it is not (or no longer) there."""
    stmt = (
        update(Evidence)
        .where(Evidence.id == evidence_id, Evidence.channel == "smtp", Evidence.state == REVIEW)
        .values(state=state, processed_at=now, decided_by=admin)
    )
    if cast(CursorResult[Any], session.execute(stmt)).rowcount != 1:
        raise PayloadError(f"review item {evidence_id} does not exist or was already decided")
    row = session.get_one(Evidence, evidence_id)
    session.refresh(row)
    return row


def approve(
    session: Session, evidence_id: int, policy: StorePolicy, *, now: datetime, admin: str, email: str | None = None
) -> RecordResult:
    """Record the opt-out of ``email`` (the address the admin chose; without one, the item's
    requester) and close the item. An address the request names for someone else never
    carries the requester's proof (``verification: none``), and the event keeps both."""
    row = _decide(session, evidence_id, APPROVED, now, admin)
    result = row.result or {}
    requester, _ = candidates(row)
    raw = email or requester
    if not raw:
        raise PayloadError("this message names no address: enter the address to opt out")
    address = normalize_address(raw).email
    on_behalf = requester is None or address != normalize_address(requester).email
    try:
        scope = validate_scope(result.get("scope") or GLOBAL_SCOPE)
        verification = Verification.NONE if on_behalf else Verification(result.get("verification") or "none")
    except ValueError as exc:
        raise PayloadError(f"review item {evidence_id}: {exc}") from None
    event = OptOutEvent(
        email=address,
        kind=Kind.UNSUBSCRIBE,
        source=Source.SMTP,
        scope=scope,
        verification=verification,
        provider_event_id=f"smtp:{row.id}",
        occurred_at=row.received_at,
        received_at=row.received_at,
        reason=APPROVED_REASON,
        campaign=result.get("campaign"),
        evidence_id=row.id,
        metadata={
            "approved_at": now.isoformat(),
            "approved_by": admin,
            "classification": result.get("classification"),
            "requested_by": requester,
        },
    )
    return record_events(session, [event], policy, now=now)


def reject(session: Session, evidence_id: int, *, now: datetime, admin: str) -> None:
    _decide(session, evidence_id, REJECTED, now, admin)

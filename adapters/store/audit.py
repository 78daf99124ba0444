"""Reading the audit trail (README "Compliance"): one address's every event with its evidence
and the pushes it caused, and a period's events streamed for the signed export. Pushes are
read wherever they are, in the outbox or compacted (:func:`~adapters.store.compaction.pushes`).

Evidence is given inline up to :data:`EVIDENCE_INLINE_BYTES` (text when it is UTF-8, else
base64), always with its size and SHA-256 and the admin route that returns it whole.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.store.compaction import pushes, pushes_of
from adapters.store.models import Event, Evidence

EVIDENCE_INLINE_BYTES = 64 * 1024
STREAM_ROWS = 500  # rows fetched at once by the period export (an evidence row may be 1 MiB)
EVIDENCE_ROUTE = "/admin/evidence/{id}"


def _pushes(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "provider": r.provider,
            "action": r.action,
            "scope": r.scope,
            "state": r.state,
            "attempts": r.attempts,
            "queued_at": r.created_at.isoformat(),
            "confirmed_at": r.done_at.isoformat() if r.done_at else None,
            "last_status": r.last_status,
            "last_result": r.last_error,
        }
        for r in rows
    ]


def _evidence(evidence: Evidence) -> dict[str, Any]:
    content = evidence.content
    inline = content[:EVIDENCE_INLINE_BYTES]
    try:
        text: dict[str, Any] = {"text": inline.decode("utf-8")}
    except UnicodeDecodeError:
        text = {"base64": base64.b64encode(inline).decode()}
    return {
        "id": evidence.id,
        "channel": evidence.channel,
        "received_at": evidence.received_at.isoformat(),
        "content_type": evidence.content_type,
        "meta": evidence.meta,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "truncated": len(content) > EVIDENCE_INLINE_BYTES,
        "url": EVIDENCE_ROUTE.format(id=evidence.id),
        **text,
    }


def _event(e: Event | Row[Any]) -> dict[str, Any]:
    """An event's fields, from its model or a row of its table."""
    return {
        "id": e.id,
        "kind": e.kind,
        "scope": e.scope,
        "source": e.source,
        "verification": e.verification,
        "actor": e.actor,
        "admin": (e.meta or {}).get("admin"),
        "provider_event_id": e.provider_event_id,
        "occurred_at": e.occurred_at.isoformat(),
        "received_at": e.received_at.isoformat(),
        "reason": e.reason,
        "campaign": e.campaign,
    }


def address_history(session: Session, email: str) -> dict[str, Any]:
    """``{"email", "events": [...]}``: every event of the address in storage order, each with
    its evidence and its pushes. Raises :class:`~adapters.errors.AddressError` for a bad address."""
    address = normalize_address(email)
    events = session.scalars(select(Event).where(Event.email_key == address.key).order_by(Event.id)).all()
    ids = [e.id for e in events]
    caused = pushes_of(session, ids)
    evidence: dict[int, Evidence] = {}
    if ids:
        wanted = {e.evidence_id for e in events if e.evidence_id is not None}
        evidence = {ev.id: ev for ev in session.scalars(select(Evidence).where(Evidence.id.in_(wanted)))}
    return {
        "email": events[-1].email if events else address.email,
        "events": [
            {
                **_event(e),
                "evidence": _evidence(evidence[e.evidence_id]) if e.evidence_id in evidence else None,
                "pushes": _pushes(caused.get(e.id, [])),
            }
            for e in events
        ],
    }


PERIOD_FIELDS = (
    "id",
    "email",
    "kind",
    "scope",
    "source",
    "verification",
    "actor",
    "admin",
    "provider_event_id",
    "occurred_at",
    "received_at",
    "reason",
    "campaign",
    "evidence_id",
    "evidence_sha256",
    "pushes",
)
"""The columns of the period export: the event, its evidence's id and SHA-256, and its pushes
as ``provider:state:attempts:confirmed_at`` joined by ``;``."""


def period_rows(session: Session, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """The events received in [since, until), in storage order, one flat row each. One query
    joins each event to its pushes (queued or compacted) and evidence, streamed (a server-side
    cursor on PostgreSQL), so a year of events is never held at once."""
    e, ev = Event.__table__.c, Evidence.__table__.c
    in_period = (e.received_at >= since, e.received_at < until)
    caused = pushes(select(e.id).where(*in_period))
    p = caused.c
    stmt = (
        select(Event.__table__, ev.content, p.provider, p.state, p.attempts, p.done_at)
        .select_from(Event.__table__)
        .outerjoin(Evidence.__table__, ev.id == e.evidence_id)
        .outerjoin(caused, p.event_id == e.id)
        .where(*in_period)
        .order_by(e.id, p.id)
        .execution_options(stream_results=True, yield_per=STREAM_ROWS)
    )
    result = session.execute(stmt)
    try:
        event: dict[str, Any] | None = None
        cells: list[str] = []
        for row in result:
            if event is None or event["id"] != row.id:
                if event is not None:
                    yield {**event, "pushes": ";".join(cells)}
                event, cells = _period_event(row), []
            if row.provider is not None:
                confirmed = row.done_at.isoformat() if row.done_at else ""
                cells.append(f"{row.provider}:{row.state}:{row.attempts}:{confirmed}")
        if event is not None:
            yield {**event, "pushes": ";".join(cells)}
    finally:
        result.close()


def _period_event(row: Row[Any]) -> dict[str, Any]:
    return {
        "email": row.email,
        **_event(row),
        "evidence_id": row.evidence_id,
        "evidence_sha256": hashlib.sha256(row.content).hexdigest() if row.content is not None else "",
    }

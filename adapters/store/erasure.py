"""Erasing an address (README "Erasure"): every piece of personal data of it leaves every
table; a keyed hash and the non-personal facts stay, so it stays suppressed.

- ``events``: kept as facts (kind, scope, source, verification, actor, campaign, times) under
  the pseudonym ``erased:<hash>``; the reason, metadata, provider event id (an import's is an
  unkeyed hash of the address) and the link to evidence are cleared. ``event_counts`` moves
  their count from the reason to "no reason" (a reason is free text). The change feed's
  changes read address and scope through their event, so they show the pseudonym too.
- ``suppressions`` and ``delivery_blocks``: moved to the pseudonym (merged with the rows an
  earlier erasure of the same address left), reason cleared.
- ``evidence``: every row the address's events point at, and every row whose raw content,
  metadata or classification names the address (also URL-encoded, in any case): deleted when
  it concerns no one else (one SMTP message, a review item, a one-event delivery); when it
  also carries other people's events (a provider's batch delivery), this person's elements
  are cut out of a JSON array body, and any other body is emptied whole; ``meta`` records
  ``"redacted": "erasure"``. Such a row's signature no longer verifies, by design. While a
  message naming the address waits for classification, the erasure is refused.
- ``recipients`` (tokens) and ``confirmation_sends``: deleted. ``outbox``: settled rows move
  to the pseudonym, dead rows (pushes no provider accepted) are deleted, and while a push is
  still pending the erasure is refused: the providers must hold the opt-out first. Compacted
  pushes (``push_confirmations``) name no one but through their event; their provider's
  answer is cleared like a settled row's.
- ``erased_subjects`` gains the hash. Nothing is pushed: the providers keep the last opt-out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from adapters.addresses import normalize_address
from adapters.errors import ErasureError
from adapters.store.address_locks import lock_addresses
from adapters.store.bulk import chunks, insert_statement
from adapters.store.erased import PSEUDONYM_PREFIX, address_hash
from adapters.store.models import (
    REASON_KEY_CHARS,
    ConfirmationSend,
    DeliveryBlock,
    ErasedSubject,
    Event,
    EventCount,
    Evidence,
    InstanceSetting,
    OutboxRow,
    PendingLookup,
    ProviderContact,
    PushConfirmation,
    Recipient,
    ReconcileSnapshot,
    Suppression,
)

KEY_CHECK_SETTING = "erasure_key_check"
SCAN_BATCH = 500  # evidence rows read at a time while looking for the address
REDACTED = {"redacted": "erasure"}
PENDING = "pending"  # evidence not classified yet (inbound.evidence): it may hold a request


@dataclasses.dataclass(frozen=True)
class ErasureResult:
    address_hash: str
    erased_at: datetime
    already_erased: bool  # erased before (what this run removed arrived since)
    removed: dict[str, int]  # what was removed or made anonymous, per kind of record

    def as_json(self) -> dict[str, Any]:
        return {
            "address_hash": self.address_hash,
            "erased_at": self.erased_at.isoformat(),
            "already_erased": self.already_erased,
            "removed": self.removed,
        }


def key_check(erasure_key: bytes) -> str:
    """What the store keeps to recognise the key erasures were made with (not the key)."""
    return hmac.new(erasure_key, b"optout-hub erasure key check", hashlib.sha256).hexdigest()


def erase_address(session: Session, email: str, *, erasure_key: bytes | None, now: datetime) -> ErasureResult:
    """Erase ``email`` in the caller's transaction (see the module docstring). Idempotent:
    erasing again removes only what arrived since. Raises :class:`ErasureError` when it
    cannot be done now, :class:`~adapters.errors.AddressError` for an invalid address."""
    if erasure_key is None:
        raise ErasureError("erasure needs a key: set [security] erasure_key_env to a variable holding one")
    _remember_key(session, erasure_key)
    key = normalize_address(email).key
    lock_addresses(session, [key])
    digest = address_hash(erasure_key, key)
    alias = PSEUDONYM_PREFIX + digest
    events = session.execute(
        select(Event.id, Event.evidence_id, Event.reason, Event.source, Event.kind, Event.received_at).where(
            Event.email_key == key
        )
    ).all()
    event_ids = [e.id for e in events]
    removed: Counter[str] = Counter()
    removed["outbox_settled"], removed["outbox_dead"] = _outbox(session, event_ids, alias)
    linked = {e.evidence_id for e in events if e.evidence_id is not None}
    _move_reason_counts(session, events)
    removed["events"] = _changed(
        session,
        update(Event)
        .where(Event.email_key == key)
        .values(email=alias, email_key=alias, reason=None, meta=None, provider_event_id=None, evidence_id=None),
    )
    removed["evidence_deleted"], removed["evidence_redacted"] = _evidence(session, key, linked)
    removed["suppressions"] = _move_states(session, Suppression, "scope", key, alias)
    removed["delivery_blocks"] = _move_states(session, DeliveryBlock, "kind", key, alias)
    removed["recipients"] = _changed(session, delete(Recipient).where(Recipient.email_key == key))
    removed["confirmations"] = _changed(session, delete(ConfirmationSend).where(ConfirmationSend.email_key == key))
    # What providers told us of the address: a contact id, its place in a pulled list.
    removed["provider_contacts"] = _changed(session, delete(ProviderContact).where(ProviderContact.email_key == key))
    removed["reconcile_snapshots"] = _changed(
        session, delete(ReconcileSnapshot).where(ReconcileSnapshot.email_key == key)
    )
    already = session.get(ErasedSubject, digest)
    if already is None:
        session.add(ErasedSubject(address_hash=digest, erased_at=now))
        session.flush()
    return ErasureResult(digest, already.erased_at if already else now, already is not None, dict(removed))


def _changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE; the number of rows it touched."""
    return session.connection().execute(statement).rowcount


def _remember_key(session: Session, erasure_key: bytes) -> None:
    """Keep the key's check value on the first erasure; refuse another key afterwards (the
    earlier erasures would no longer be recognised)."""
    check = key_check(erasure_key)
    session.execute(
        insert_statement(session, InstanceSetting).on_conflict_do_nothing(index_elements=["name"]),
        [{"name": KEY_CHECK_SETTING, "value": check}],
    )
    if not hmac.compare_digest(session.get_one(InstanceSetting, KEY_CHECK_SETTING).value, check):
        raise ErasureError("[security] erasure_key_env holds another key than the one earlier erasures used")


def _outbox(session: Session, event_ids: Sequence[int], alias: str) -> tuple[int, int]:
    """Settled pushes move to the pseudonym (compacted ones lose the provider's answer), dead
    ones go; refused while one is pending."""
    settled = dead = 0
    for chunk in chunks(list(event_ids), 10_000):
        of_person = OutboxRow.event_id.in_(chunk)
        pending = session.scalar(select(func.count()).where(of_person, OutboxRow.state == "pending"))
        if pending:
            raise ErasureError(
                f"{pending} push(es) of this address to providers are still pending: erase it once they "
                "are done (optout-hub sync, or the worker), so the providers keep the opt-out"
            )
        dead += _changed(session, delete(OutboxRow).where(of_person, OutboxRow.state == "dead"))
        settled += _changed(session, update(OutboxRow).where(of_person).values(email=alias, last_error=None))
        compacted = update(PushConfirmation).where(PushConfirmation.event_id.in_(chunk)).values(last_error=None)
        settled += _changed(session, compacted)
    return settled, dead


def _move_reason_counts(session: Session, events: Sequence[Any]) -> None:
    """Count the events' reasons as "no reason" in ``event_counts`` (the reason is erased)."""
    moves: Counter[tuple[str, str, str, str]] = Counter()
    for e in events:
        if e.reason:
            moves[
                (e.received_at.astimezone(UTC).date().isoformat(), e.source, e.kind, e.reason[:REASON_KEY_CHARS])
            ] += 1
    table = EventCount.__table__
    for (day, source, kind, reason), n in sorted(moves.items()):
        at = (table.c.day == day, table.c.source == source, table.c.kind == kind)
        session.execute(update(table).where(*at, table.c.reason == reason).values(n=table.c.n - n))
        session.execute(delete(table).where(*at, table.c.reason == reason, table.c.n <= 0))
        stmt = insert_statement(session, EventCount)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["day", "source", "kind", "reason"], set_={"n": table.c.n + stmt.excluded.n}
            ),
            [{"day": day, "source": source, "kind": kind, "reason": "", "n": n}],
        )


def _needles(key: str) -> tuple[bytes, ...]:
    """The forms an address takes in stored bytes, lower-cased: plain, URL-encoded."""
    return tuple(dict.fromkeys(form.lower().encode() for form in (key, quote(key, safe=""), quote_plus(key))))


def _mentions(value: Any, needles: Sequence[bytes]) -> bool:
    if value is None:
        return False
    data = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    lowered = data.lower()
    return any(n in lowered for n in needles)


def _evidence(session: Session, key: str, linked: set[int]) -> tuple[int, int]:
    """Delete the evidence that concerns only this address, redact what it shares with others."""
    needles = _needles(key)
    found = set(linked)
    last = 0
    while True:  # every row, in id order, a batch at a time (bounded memory)
        rows = session.execute(
            select(Evidence.id, Evidence.state, Evidence.content, Evidence.meta, Evidence.result)
            .where(Evidence.id > last)
            .order_by(Evidence.id)
            .limit(SCAN_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        hits = [r for r in rows if any(_mentions(v, needles) for v in (r.content, r.meta, r.result))]
        if any(r.state == PENDING for r in hits):
            raise ErasureError("a message naming this address still waits for classification: erase it once classified")
        found.update(r.id for r in hits)
    shared: set[int] = set()
    for chunk in chunks(sorted(found), 10_000):
        shared.update(
            session.scalars(select(Event.evidence_id).where(Event.evidence_id.in_(chunk)).distinct())
        )  # this address's events no longer point at any evidence
        shared.update(session.scalars(select(PendingLookup.evidence_id).where(PendingLookup.evidence_id.in_(chunk))))
    alone = sorted(found - shared)
    for chunk in chunks(alone, 10_000):
        session.execute(delete(Evidence).where(Evidence.id.in_(chunk)))
    for evidence_id in sorted(found & shared):
        row = session.get_one(Evidence, evidence_id)
        row.content = _cut(row.content, needles)
        row.meta = {**(row.meta if row.meta and not _mentions(row.meta, needles) else {}), **REDACTED}
        if _mentions(row.result, needles):
            row.result = None
    session.flush()
    return len(alone), len(found & shared)


def _cut(content: bytes, needles: Sequence[bytes]) -> bytes:
    """``content`` without the elements that name the address, when it is a JSON array (a
    provider's batch); otherwise nothing of it can be kept."""
    try:
        items = json.loads(content)
    except ValueError:
        return b""
    if not isinstance(items, list):
        return b""
    kept = json.dumps([i for i in items if not _mentions(i, needles)], ensure_ascii=False).encode()
    return b"" if _mentions(kept, needles) else kept


def _move_states(
    session: Session, model: type[Suppression] | type[DeliveryBlock], part: str, key: str, alias: str
) -> int:
    """Move an address's rows of ``model`` (keyed by ``email_key`` and ``part``) to its
    pseudonym, merging them with rows an earlier erasure left there."""
    mine: Sequence[Any] = session.scalars(select(model).where(model.email_key == key)).all()
    if not mine:
        return 0
    earlier: dict[str, Any] = {
        getattr(r, part): r for r in session.scalars(select(model).where(model.email_key == alias))
    }
    values = []
    for row in mine:
        data = {c.name: getattr(row, c.key) for c in model.__table__.columns}
        data["email_key"] = alias
        if "email" in data:
            data["email"], data["reason"] = alias, None
        old = earlier.get(getattr(row, part))
        if old is not None:
            if old.last_at > row.last_at:
                data.update({c.name: getattr(old, c.key) for c in model.__table__.columns})
            data["first_at"] = min(old.first_at, row.first_at)
            if "suppressed" in data:
                data["suppressed"] = old.suppressed or row.suppressed
            session.delete(old)
        values.append(data)
    session.execute(delete(model).where(model.email_key == key))
    session.flush()
    session.execute(insert_statement(session, model), values)
    return len(mine)

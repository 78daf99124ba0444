"""Inbound messages in the store: written durably before ``250``, classified afterwards.

Each accepted message becomes one ``evidence`` row (``channel="smtp"``, the raw bytes, the
envelope, the peer) in state ``pending``; :class:`EvidenceWriter` commits it before the SMTP
handler answers, grouping messages that arrive together into one transaction (one fsync for
many senders). :func:`process_batch` then classifies a pending row and, in ONE transaction,
records the events it implies and moves the row to ``done`` (or ``review``). Events carry
``provider_event_id="smtp:<evidence id>"``, so classifying a row again after a crash stores
nothing twice; rows still ``pending`` at start-up are classified again (:func:`pending_ids`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from adapters.addresses import normalize_address
from adapters.errors import OptOutHubError, StoreError, TokenError
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.bulk import driver_rows
from adapters.store.confirmations import queue_confirmation
from adapters.store.models import Evidence, Recipient
from adapters.store.recipients import resolve_token
from adapters.store.record import RecordResult, record_events
from adapters.tokens import token_from_local_part
from inbound.classify import Category, Classification, DNSLookup, Envelope, TokenTarget, classify_message

log = logging.getLogger(__name__)

CHANNEL = "smtp"
CONTENT_TYPE = "message/rfc822"
PENDING, DONE, REVIEW = "pending", "done", "review"
EVIDENCE_COLUMNS = ("channel", "source", "received_at", "content", "content_type", "meta", "state")


@dataclasses.dataclass(frozen=True)
class Received:
    """One message as the listener received it."""

    raw: bytes
    mail_from: str
    rcpt_tos: Sequence[str]
    peer: str
    helo: str | None
    received_at: datetime

    def values(self) -> list[Any]:
        """The ``evidence`` row, in the order of :data:`EVIDENCE_COLUMNS`."""
        meta = {"mail_from": self.mail_from, "rcpt_tos": list(self.rcpt_tos), "peer": self.peer, "helo": self.helo}
        return [CHANNEL, Source.SMTP.value, self.received_at, self.raw, CONTENT_TYPE, meta, PENDING]


class _Pending:
    """One message waiting for its commit: a thread blocks on ``done``, a coroutine awaits ``future``."""

    __slots__ = ("done", "error", "evidence_id", "future", "loop", "received")

    def __init__(
        self,
        received: Received,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[int] | None = None,
    ) -> None:
        self.received = received
        self.done = threading.Event() if future is None else None
        self.evidence_id: int | None = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future = future

    def outcome(self) -> int:
        if self.error is not None:
            raise StoreError(f"could not store the message: {self.error.__class__.__name__}") from self.error
        assert self.evidence_id is not None
        return self.evidence_id


T = TypeVar("T")


def take_batch(
    source: queue.SimpleQueue[T | None] | queue.Queue[T | None], first: T, limit: int
) -> tuple[list[T], bool]:
    """``first`` and what else is queued right now, up to ``limit`` items; and whether the
    stop marker (``None``) was reached, which ends the batch."""
    batch = [first]
    while len(batch) < limit:
        try:
            nxt = source.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            return batch, True
        batch.append(nxt)
    return batch, False


def _settle(items: list[_Pending]) -> None:
    """Resolve the futures of ``items`` (runs on their event loop)."""
    for item in items:
        assert item.future is not None
        if item.future.done():  # the SMTP session went away meanwhile
            continue
        try:
            item.future.set_result(item.outcome())
        except StoreError as exc:
            item.future.set_exception(exc)


class EvidenceWriter:
    """Durable writes with group commit, by one writer thread.

    Messages queue up while a commit is under way and are written together in the next
    transaction, so many concurrent senders share one fsync; the thread wakes the event loop
    once per batch. ``await store_async(...)`` (from the listener's loop) or ``store(...)``
    (from any thread) returns the evidence id once the row is committed, or raises
    :class:`StoreError`.

    The thread keeps one database connection of its own and talks to the driver directly:
    on this path SQLAlchemy's statement machinery cost about four times the database work,
    and every microsecond the writer holds the interpreter lock is taken from the listener.
    After a database error the connection is discarded and the next batch opens a fresh one.
    """

    def __init__(self, hub: Hub, *, max_batch: int = 256) -> None:
        self.hub = hub
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._connection: PoolProxiedConnection | None = None  # used by the writer thread only
        sqlite = hub.engine.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        self._insert_sql = f"INSERT INTO {Evidence.__tablename__} ({', '.join(EVIDENCE_COLUMNS)}) VALUES ({', '.join([mark] * len(EVIDENCE_COLUMNS))})"
        self._sqlite = sqlite

    def _ensure_running(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="smtp-evidence-writer", daemon=True)
                    self._thread.start()

    def store(self, received: Received) -> int:
        item = _Pending(received)
        self._ensure_running()
        self._queue.put(item)
        assert item.done is not None
        item.done.wait()
        return item.outcome()

    async def store_async(self, received: Received) -> int:
        """The evidence id once committed. Cancelling the caller abandons only the wait: the
        row is still written (and classified), as the sender may have finished sending."""
        loop = asyncio.get_running_loop()
        item = _Pending(received, loop, loop.create_future())
        self._ensure_running()
        self._queue.put(item)
        assert item.future is not None
        return await item.future

    def close(self) -> None:
        """Write what is queued, then stop the thread and give its connection back."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = take_batch(self._queue, first, self.max_batch)
                self._write(batch)
                if stop:
                    return
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _insert(self, rows: list[list[Any]]) -> list[int]:
        """Insert ``rows`` in one committed transaction; their ids, in order."""
        if self._connection is None:
            self._connection = self.hub.engine.raw_connection()
        dbapi = self._connection.driver_connection
        try:
            with contextlib.closing(dbapi.cursor()) as cursor:
                if self._sqlite:  # autocommit driver mode (see adapters.db): the transaction is ours
                    cursor.execute("BEGIN IMMEDIATE")
                    before = cursor.execute(f"SELECT coalesce(max(id), 0) FROM {Evidence.__tablename__}").fetchone()[0]
                    cursor.executemany(self._insert_sql, rows)
                    cursor.execute("COMMIT")
                    # the write lock was held: SQLite numbered the rows after the largest id, in order
                    return list(range(before + 1, before + 1 + len(rows)))
                cursor.executemany(self._insert_sql + " RETURNING id", rows, returning=True)
                ids = []
                while True:  # one result per row, in the order of the rows
                    ids.append(cursor.fetchone()[0])
                    if not cursor.nextset():
                        break
            dbapi.commit()
            return ids
        except BaseException:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                dbapi.rollback()  # release the write lock now, not when the connection is collected
            connection.invalidate()  # a fresh connection for the next batch
            raise

    def _write(self, batch: list[_Pending]) -> None:
        try:
            rows = driver_rows(
                self.hub.engine, Evidence.__table__, EVIDENCE_COLUMNS, [item.received.values() for item in batch]
            )
            ids = self._insert(rows)
        except Exception as exc:  # every waiter must learn the outcome
            for item in batch:
                item.error = exc
        else:
            for item, evidence_id in zip(batch, ids):
                item.evidence_id = evidence_id
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            if item.done is not None:
                item.done.set()
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the loop closed: nobody is waiting any more
                pass


def pending_ids(hub: Hub) -> list[int]:
    """Inbound messages stored but not yet classified, oldest first."""
    with hub.sessions.begin() as session:
        stmt = select(Evidence.id).where(Evidence.channel == CHANNEL, Evidence.state == PENDING).order_by(Evidence.id)
        return list(session.scalars(stmt))


def events_for(hub: Hub, verdict: Classification, evidence: Evidence) -> list[OptOutEvent]:
    """The events a classification implies (bounces only when the policy suppresses them)."""
    if verdict.category is Category.UNSUBSCRIBE:
        kind = Kind.UNSUBSCRIBE
    elif verdict.category is Category.COMPLAINT:
        kind = Kind.COMPLAINT
    elif verdict.category is Category.BOUNCE and hub.config.inbound.suppress_hard_bounces:
        kind = Kind.BOUNCE
    else:
        return []
    events = []
    for n, address in enumerate(verdict.addresses):
        try:
            email = normalize_address(address).email
        except OptOutHubError:
            continue
        events.append(
            OptOutEvent(
                email=email,
                kind=kind,
                source=Source.SMTP,
                scope=verdict.scope,
                verification=verdict.verification,
                provider_event_id=f"smtp:{evidence.id}" if n == 0 else f"smtp:{evidence.id}:{n}",
                occurred_at=evidence.received_at,
                received_at=evidence.received_at,
                reason=f"{verdict.category.value}: {verdict.reason}"[:500],
                campaign=verdict.campaign,
                evidence_id=evidence.id,
            )
        )
    return events


def _prefetch_tokens(session: Session, hub: Hub, rows: Sequence[Evidence]) -> dict[str, Recipient | None]:
    """The recipients of every tokenized RCPT of ``rows``, in one query (``None``: unknown)."""
    domains = {d.lower().rstrip(".") for d in hub.config.smtp.domains}
    wanted: dict[str, int] = {}
    for row in rows:
        for rcpt in (row.meta or {}).get("rcpt_tos") or ():
            local, _, domain = str(rcpt).strip().strip("<>").rpartition("@")
            token = token_from_local_part(local) if domain.lower().rstrip(".") in domains else None
            if token is None:
                continue
            try:
                wanted[token] = hub.signer.verify(token)
            except TokenError:
                continue
    if not wanted:
        return {}
    found = {r.id: r for r in session.scalars(select(Recipient).where(Recipient.id.in_(set(wanted.values()))))}
    for recipient in found.values():
        session.expunge(recipient)
    return {token: found.get(rid) for token, rid in wanted.items()}


def _token_resolver(hub: Hub, known: dict[str, Recipient | None]) -> Callable[[str], TokenTarget | None]:
    """Token look-ups: from ``known`` (prefetched), else in a short transaction of their own
    (the classifier itself holds none)."""

    def resolve(token: str) -> TokenTarget | None:
        if token in known:
            recipient = known[token]
            if recipient is None:
                raise TokenError("unknown token")
            return recipient
        hub.signer.verify(token)  # a forged token never reaches the database
        with hub.sessions.begin() as session:
            recipient = resolve_token(session, hub.signer, token)
            session.expunge(recipient)
            return recipient

    return resolve


def process_evidence(hub: Hub, evidence_id: int, *, dkim_dns: DNSLookup | None = None) -> Classification | None:
    """Classify one pending row and record what it implies; ``None`` if it is not pending."""
    return process_batch(hub, [evidence_id], dkim_dns=dkim_dns).get(evidence_id)


def process_batch(
    hub: Hub, evidence_ids: Sequence[int], *, dkim_dns: DNSLookup | None = None
) -> dict[int, Classification]:
    """Classify pending rows and record what they imply, all in one transaction.

    Reads the rows (and the recipients of their tokens) in one short transaction, classifies
    them outside any transaction (DKIM may query DNS), then records every event and moves
    every row to ``done``/``review`` in ONE transaction: a crash leaves a row either
    ``pending`` with no events, or classified with all of them. Rows that are no longer
    pending are skipped. Raises :class:`StoreError` when the database fails.
    """
    try:
        with hub.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(Evidence)
                    .where(Evidence.id.in_(list(evidence_ids)), Evidence.state == PENDING)
                    .order_by(Evidence.id)
                )
            )
            for row in rows:
                session.expunge(row)
            known = _prefetch_tokens(session, hub, rows)
        if not rows:
            return {}
        resolver = _token_resolver(hub, known)
        verdicts: dict[int, Classification] = {}
        for row in rows:
            meta: dict[str, Any] = row.meta or {}
            envelope = Envelope(mail_from=meta.get("mail_from"), rcpt_tos=tuple(meta.get("rcpt_tos") or ()))
            try:
                verdicts[row.id] = classify_message(
                    row.content, envelope, config=hub.config, resolve_token=resolver, dkim_dns=dkim_dns
                )
            except SQLAlchemyError:
                raise
            except Exception as exc:  # a classifier bug must not lose the message: an admin looks at it
                log.exception("classifier failed on evidence %s", row.id)
                verdicts[row.id] = Classification(
                    Category.REVIEW, reason="the classifier failed on this message", detail=exc.__class__.__name__
                )
        now = hub.clock()
        with hub.sessions.begin() as session:
            stmt = select(Evidence).where(Evidence.id.in_(list(verdicts)), Evidence.state == PENDING).with_for_update()
            current = {row.id: row for row in session.scalars(stmt)}
            by_id = {row.id: row for row in rows}
            events = [
                event for evidence_id in current for event in events_for(hub, verdicts[evidence_id], by_id[evidence_id])
            ]
            result: RecordResult = record_events(session, events, hub.policy, now=now)
            if result.new:  # at most one a day per address; the worker mails them
                for event in events:
                    queue_confirmation(
                        session, hub.config, event, auto_submitted=verdicts[event.evidence_id].automatic, now=now
                    )
            for evidence_id, row in current.items():
                verdict = verdicts[evidence_id]
                row.state = REVIEW if verdict.category is Category.REVIEW else DONE
                row.result = verdict.as_result()
                row.processed_at = now
    except SQLAlchemyError as exc:
        raise StoreError(f"could not classify evidence {list(evidence_ids)[:5]}: {exc.__class__.__name__}") from exc
    hub.count_events(result)
    done = {evidence_id: verdicts[evidence_id] for evidence_id in current}
    for evidence_id, verdict in done.items():
        hub.metrics.smtp_messages.labels(verdict.category.value).inc()
        log.info(
            "smtp message %s: %s (verification %s)", evidence_id, verdict.category.value, verdict.verification.value
        )
    return done

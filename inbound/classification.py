"""The classification thread: stored messages become events after the ``250``.

:class:`Classifier` takes the ``pending`` evidence rows the writer (:mod:`inbound.evidence`)
committed, oldest first and in batches, classifies them with the pure classifier
(:mod:`inbound.classify`), and :func:`process_batch` records, in ONE transaction through
:meth:`~adapters.hub.Hub.record_with`, the events each implies, their confirmation mail, and
the row's move to ``done`` (or ``review``). Events carry ``provider_event_id="smtp:<evidence
id>"``, so classifying a row again after a crash stores nothing twice; rows still ``pending``
at start-up (the process died between ``250`` and classification) are classified first. See
the README's "Mail in: the SMTP listener".

Test hook: ``OPTOUT_HUB_TEST_CLASSIFY_DELAY`` (:data:`DELAY_ENV`, seconds, unset in
production) delays each batch, so the crash test can kill the process between ``250`` and
classification.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.errors import OptOutHubError, StoreError, TokenError
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.confirmations import queue_confirmation
from adapters.store.models import Evidence, Recipient
from adapters.store.recipients import resolve_token
from adapters.store.record import RecordResult, record_events
from inbound.batches import take_batch
from inbound.classify import Category, Classification, DNSLookup, Envelope, TokenTarget, classify_message
from inbound.classify.tokens import recipient_token
from inbound.evidence import CHANNEL, DONE, PENDING, REVIEW

log = logging.getLogger(__name__)

DELAY_ENV = "OPTOUT_HUB_TEST_CLASSIFY_DELAY"


def default_dkim_dns() -> DNSLookup:
    """dkimpy's own DNS TXT lookup (dnspython)."""
    from dkim.dnsplug import get_txt

    return get_txt


class Classifier:
    """One background thread that classifies stored messages, oldest first, in batches.

    Intake comes first: classifying competes with the listener for the interpreter, so while
    messages are arriving (``busy()``) the thread waits, but never more than ``max_defer``
    seconds. A burst is thus acknowledged at full speed and classified right after it; under
    a flood that outlasts the wait, the thread classifies the whole backlog each time, so it
    never falls behind for more than about ``max_defer`` seconds. (An opt-out must be honoured
    within days; seconds of delay cost nothing, a slow ``250`` costs senders.)
    """

    def __init__(
        self,
        hub: Hub,
        *,
        dkim_dns: DNSLookup | None,
        delay: float = 0.0,
        busy: Callable[[], bool] = lambda: False,
        max_batch: int = 100,
        max_defer: float = 5.0,
        max_attempts: int = 5,
    ) -> None:
        self.max_defer = max_defer
        self.hub = hub
        self.dkim_dns = dkim_dns
        self.delay = delay
        self.busy = busy
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.queue: queue.Queue[int | None] = queue.Queue()
        self._attempts: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="smtp-classifier", daemon=True)
        self._stop_requested = threading.Event()  # ends the test hook's delay early
        self._stopping = threading.Event()

    def start(self) -> None:
        try:
            recovered = pending_ids(self.hub)
        except Exception:
            log.exception("could not list pending inbound messages; they are classified at the next start")
            recovered = []
        if recovered:
            log.info("classifying %d inbound message(s) stored before the last stop", len(recovered))
        for evidence_id in recovered:
            self.queue.put(evidence_id)
        self._thread.start()

    def submit(self, evidence_id: int) -> None:
        self.queue.put(evidence_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (up to ``timeout``); the rest stays pending for the next start."""
        self.queue.put(None)
        self._stop_requested.set()
        self._thread.join(timeout=timeout)
        self._stopping.set()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            first = self.queue.get()  # the first message of a burst wakes the thread...
            if first is None:
                return
            deferred_until = time.monotonic() + self.max_defer  # ...which waits for the burst to end
            while self.busy() and time.monotonic() < deferred_until and not self._stopping.is_set():
                time.sleep(0.05)
            flood = self.busy()  # still arriving after the whole wait: drain the backlog now
            while True:
                batch, last = take_batch(self.queue, first, self.max_batch)
                if self.delay:
                    self._stop_requested.wait(self.delay)
                if not self._stopping.is_set():
                    self._process(batch)
                if last or self._stopping.is_set():
                    return
                if not flood:
                    break
                try:
                    first = self.queue.get_nowait()
                except queue.Empty:
                    break
                if first is None:
                    return

    def _process(self, batch: list[int]) -> None:
        try:
            process_batch(self.hub, batch, dkim_dns=self.dkim_dns)
        except Exception:
            for evidence_id in batch:
                attempts = self._attempts.get(evidence_id, 0) + 1
                self._attempts[evidence_id] = attempts
                if attempts < self.max_attempts:
                    threading.Timer(min(2.0**attempts, 60.0), self.queue.put, args=(evidence_id,)).start()
            log.warning(
                "classifying %d message(s) failed; retrying later (they stay pending until done)",
                len(batch),
                exc_info=True,
            )
        else:
            for evidence_id in batch:
                self._attempts.pop(evidence_id, None)


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
    domains = hub.config.smtp.domains
    wanted: dict[str, int] = {}
    for row in rows:
        for rcpt in (row.meta or {}).get("rcpt_tos") or ():
            token = recipient_token(str(rcpt), domains)
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
    what = f"classify evidence {list(evidence_ids)[:5]}"
    try:
        rows, known = _read_pending(hub, evidence_ids)
        if not rows:
            return {}
        verdicts = _classify_rows(hub, rows, known, dkim_dns)
    except SQLAlchemyError as exc:
        raise StoreError(f"could not {what}: {exc.__class__.__name__}") from exc
    by_id = {row.id: row for row in rows}
    done: dict[int, Classification] = {}

    def record(session: Session) -> RecordResult:
        now = hub.clock()
        stmt = select(Evidence).where(Evidence.id.in_(list(verdicts)), Evidence.state == PENDING).with_for_update()
        current = list(session.scalars(stmt))
        implied = [
            (event, verdicts[row.id]) for row in current for event in events_for(hub, verdicts[row.id], by_id[row.id])
        ]
        result = record_events(session, [event for event, _ in implied], hub.policy, now=now)
        if result.new:  # at most one a day per address; the worker mails them
            for event, verdict in implied:
                queue_confirmation(session, hub.config, event, auto_submitted=verdict.automatic, now=now)
        for row in current:
            verdict = done[row.id] = verdicts[row.id]
            row.state = REVIEW if verdict.category is Category.REVIEW else DONE
            row.result = verdict.as_result()
            row.processed_at = now
        return result

    hub.record_with(record, what=what)
    for evidence_id, verdict in done.items():
        hub.metrics.smtp_messages.labels(verdict.category.value).inc()
        log.info(
            "smtp message %s: %s (verification %s)", evidence_id, verdict.category.value, verdict.verification.value
        )
    return done


def _read_pending(hub: Hub, evidence_ids: Sequence[int]) -> tuple[list[Evidence], dict[str, Recipient | None]]:
    """The rows among ``evidence_ids`` still pending, oldest first, detached from their
    session, and the recipients their tokens name."""
    with hub.sessions.begin() as session:
        stmt = (
            select(Evidence).where(Evidence.id.in_(list(evidence_ids)), Evidence.state == PENDING).order_by(Evidence.id)
        )
        rows = list(session.scalars(stmt))
        for row in rows:
            session.expunge(row)
        return rows, _prefetch_tokens(session, hub, rows)


def _classify_rows(
    hub: Hub, rows: Sequence[Evidence], known: dict[str, Recipient | None], dkim_dns: DNSLookup | None
) -> dict[int, Classification]:
    """Each row's classification. A classifier bug must not lose a message: the row goes to
    review; a database error (from a token look-up) propagates."""
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
        except Exception as exc:
            log.exception("classifier failed on evidence %s", row.id)
            verdicts[row.id] = Classification(
                Category.REVIEW, reason="the classifier failed on this message", detail=exc.__class__.__name__
            )
    return verdicts

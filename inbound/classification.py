"""The classification thread: stored messages become events after the ``250``.

:class:`Classifier` takes the ``pending`` evidence rows the writer (:mod:`inbound.evidence`)
committed, oldest first and in batches, classifies them with the pure classifier
(:mod:`inbound.classify`), and :func:`process_batch` records, in ONE transaction through
:meth:`~adapters.hub.Hub.record_with`, the events each implies, their confirmation mail, and
the row's move to ``done`` (or ``review``). Events carry ``provider_event_id="smtp:<evidence
id>"``, so classifying a row again after a crash stores nothing twice; rows still ``pending``
at start-up (the process died between ``250`` and classification) are classified first, and
a batch the database refuses is retried with capped back-off until it is done. See
the README's "Mail in: the SMTP listener".

Test hook: ``OPTOUT_HUB_TEST_CLASSIFY_DELAY`` (:data:`DELAY_ENV`, seconds, unset in
production) delays each batch, so the crash test can kill the process between ``250`` and
classification.
"""

from __future__ import annotations

import logging
import queue
import sys
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
from adapters.store.inbound_backlog import pending_evidence_ids
from adapters.store.models import Evidence, Recipient
from adapters.store.recipients import resolve_token
from adapters.store.record import RecordResult, record_events
from inbound.batches import take_batch
from inbound.classify import Category, Classification, DNSLookup, Envelope, TokenTarget, classify_message
from inbound.classify.tokens import recipient_token
from inbound.evidence import DONE, PENDING, REVIEW

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

    Nothing stored is ever given up. The thread first sweeps the store for every row still
    ``pending`` (left by the last run); when a batch fails (the database refuses), it sweeps
    again after a back-off that doubles from 1 s up to ``[inbound].retry_max_seconds``, for as
    long as the process runs, until a sweep finds the backlog classified. When the store did
    not answer, the first message classified afterwards proves it is back: the owed sweep runs
    at once instead of at the end of a back-off that an outage has grown.
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
    ) -> None:
        self.max_defer = max_defer
        self.hub = hub
        self.dkim_dns = dkim_dns
        self.delay = delay
        self.busy = busy
        self.max_batch = max_batch
        self.retry_max = hub.config.inbound.retry_max_seconds
        self.queue: queue.Queue[int | None] = queue.Queue()
        self._failures = 0  # failed attempts since the last complete sweep
        self._last_error: BaseException | None = None
        self._sweep_at: float | None = 0.0  # monotonic time of the next sweep (None: none owed)
        self._store_down = False  # the last failure was the store not answering at all
        self._thread = threading.Thread(target=self._run, name="smtp-classifier", daemon=True)
        self._stop_requested = threading.Event()  # ends the test hook's delay early
        self._stopping = threading.Event()

    def start(self) -> None:
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
            if self._sweep_at is not None and time.monotonic() >= self._sweep_at:
                self._sweep()
                continue
            wait = None if self._sweep_at is None else self._sweep_at - time.monotonic()
            try:  # the first message of a burst wakes the thread...
                first = self.queue.get(timeout=wait)
            except queue.Empty:
                continue
            if first is None:
                return
            deferred_until = time.monotonic() + self.max_defer  # ...which waits for the burst to end
            while self.busy() and time.monotonic() < deferred_until and not self._stopping.is_set():
                time.sleep(0.05)
            flood = self.busy()  # still arriving after the whole wait: drain the backlog now
            while True:
                batch, last = take_batch(self.queue, first, self.max_batch)
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

    def _sweep(self) -> None:
        """Classify every row still pending in the store, oldest first; once all are done, no
        sweep is owed until a batch fails again.

        A batch that fails while the store still answers is retried row by row, so a row the
        store refuses (whatever in it the database cannot take) holds back no other; it stays
        pending, is retried at every sweep, and ages in the gauge. While the store does not
        answer at all, the sweep stops and backs off."""
        try:
            with self.hub.sessions.begin() as session:
                pending = pending_evidence_ids(session)
        except SQLAlchemyError as exc:
            self._last_error = exc
            self._failed(0, store_down=True)
            return
        if pending:
            log.info("classifying %d stored inbound message(s) still pending", len(pending))
        refused = 0
        for start in range(0, len(pending), self.max_batch):
            batch = pending[start : start + self.max_batch]
            if self._classify(batch):
                continue
            if self._stopping.is_set() or not self._store_answers():
                self._failed(len(pending) - start, store_down=True)
                return
            refused += sum(not self._classify([evidence_id]) for evidence_id in batch)
        if refused:
            self._failed(refused)
            return
        self._failures = 0
        self._sweep_at = None

    def _process(self, batch: list[int]) -> None:
        """Classify ``batch`` as it arrives; a failure schedules a sweep, and a success after
        the store did not answer brings the sweep forward to now."""
        if not self._classify(batch):
            self._failed(len(batch), store_down=not self._store_answers())
        elif self._store_down:
            self._store_down = False
            self._sweep_at = time.monotonic()

    def _classify(self, batch: list[int]) -> bool:
        """Classify ``batch`` in one transaction; whether it is done."""
        if self.delay:
            self._stop_requested.wait(self.delay)
        if self._stopping.is_set():
            return False
        try:
            process_batch(self.hub, batch, dkim_dns=self.dkim_dns)
        except Exception:
            log.debug("classifying evidence %s failed", batch[:5], exc_info=True)
            self._last_error = sys.exc_info()[1]
            return False
        return True

    def _store_answers(self) -> bool:
        try:
            with self.hub.sessions() as session:
                session.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def _failed(self, count: int, *, store_down: bool = False) -> None:
        self._failures += 1
        self._store_down = store_down
        wait = min(2.0 ** (self._failures - 1), self.retry_max)
        self._sweep_at = time.monotonic() + wait
        error, self._last_error = self._last_error, None
        log.warning(
            "classifying %d inbound message(s) failed (%d in a row): %s; every pending one is retried in %.1f s",
            count,
            self._failures,
            error.__class__.__name__ if error is not None else "store unavailable",
            wait,
            exc_info=error if self._failures == 1 else None,  # the traceback once, not every minute of an outage
        )


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

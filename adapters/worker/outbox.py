"""The push worker's loop: outbox rows written by :func:`adapters.store.record.record_events`, pushed.

A row says "this provider must converge (address, scope) to the hub's current state". Its
life: ``pending`` → claimed under a lease (``lease_until``, ``lease_owner``, renewed while the
worker works through its claim) → the current state pushed → ``done`` if that state is still
current, else ``pending`` again at once; ``pending`` with a later ``due_at`` on a transient
failure (retried with capped back-off until it goes through), or ``dead`` on an answer no
retry can fix (kept with the provider's answer until an admin retries it). A row whose
worker died mid-push is claimed again once its lease has run out, so nothing is lost;
providers' calls are idempotent, so a second push does no harm.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from adapters.addresses import address_key
from adapters.errors import ProviderAPIError, StoreError
from adapters.events import GLOBAL_SCOPE
from adapters.hub import Hub
from adapters.providers import constant_contact
from adapters.providers.client import Outcome, PushClient, PushResult, result_for_error
from adapters.store.compaction import compact_settled
from adapters.store.models import OutboxRow
from adapters.store.outbox import (
    Key,
    covered_rows,
    desired_states,
    held_scopes,
    lease_owners,
    release_leases,
    renew_leases,
)
from adapters.worker.confirmations import send_due_confirmations
from adapters.worker.constant_contact import poll_due
from adapters.worker.lookups import resolve_pending_lookups
from adapters.worker.retention import INTERVAL as RETENTION_INTERVAL
from adapters.worker.retention import purge_expired_evidence
from adapters.worker.subscribers import deliver_due

log = logging.getLogger(__name__)

COMPACT_EVERY = timedelta(minutes=1)
CLAIM_MAX = 1000  # rows one worker takes per provider and round (its lease is renewed meanwhile)


# --- the worker: claim, push in batches, settle ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Claimed:
    id: int
    email: str
    scope: str
    action: str  # what the row was written for; the state pushed is read when it is pushed
    attempts: int  # including this one
    received_at: datetime

    @property
    def key(self) -> Key:
        return (address_key(self.email), self.scope)


@dataclasses.dataclass
class Tally:
    """What one provider's pushes came to; ``failures`` lists the rows that went dead.
    ``requeued``: rows whose state changed while they were pushed (pushed again next round);
    ``covered``: older pending rows of an address and scope settled by a push of its state."""

    pushed: int = 0
    retried: int = 0
    dead: int = 0
    requeued: int = 0
    covered: int = 0
    failures: list[tuple[int, str, str, str]] = dataclasses.field(default_factory=list)  # (row, email, scope, detail)

    @property
    def rows(self) -> int:
        return self.pushed + self.retried + self.dead + self.requeued

    def add(self, other: Tally) -> None:
        self.pushed += other.pushed
        self.retried += other.retried
        self.dead += other.dead
        self.requeued += other.requeued
        self.covered += other.covered
        self.failures.extend(other.failures)


def worker_id() -> str:
    """A lease owner unique to this process and worker: ``host:pid:random``."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return socket.gethostname()[:40]


def gone_local_owners(owners: Iterable[str]) -> list[str]:
    """The lease owners of this host whose process no longer runs (a worker killed mid-push):
    their rows need not wait out ``lease_seconds``. An owner whose process id is in use again,
    by anything, is left alone."""
    gone = []
    for owner in owners:
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host != _host() or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            gone.append(owner)
        except PermissionError:
            continue
    return gone


class Worker:
    """Pushes due outbox rows to the providers.

    Each round claims up to ``CLAIM_MAX`` due rows per provider under a lease (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL, so concurrent workers take disjoint rows; SQLite's write lock
    serializes claims), reads the current state of each address and scope, groups them by
    scope and state into the provider's batch calls, keeps the lease while it works, and
    settles each row after its call in a transaction of its own. ``rng`` jitters back-off.
    """

    def __init__(
        self,
        hub: Hub,
        clients: Mapping[str, PushClient],
        *,
        http: requests.Session,
        owner: str | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.hub = hub
        self.clients = dict(clients)
        self.http = http
        self.owner = owner or worker_id()
        self.rng = rng
        self.purged_at: datetime | None = None  # the last retention purge
        self.next_compaction: datetime | None = None  # None: at the first upkeep

    # The loop ---------------------------------------------------------------------------

    def release_orphaned_leases(self) -> int:
        """At start: end the leases of workers of this host that were killed (their process is
        gone), so a restarted ``serve`` pushes what its predecessor had claimed at once."""
        try:
            with self.hub.sessions.begin() as session:
                return sum(release_leases(session, owner=o) for o in gone_local_owners(lease_owners(session)))
        except SQLAlchemyError:
            log.warning("worker: could not look for orphaned leases (database unavailable)")
            return 0

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set. An idle worker polls; when rows turn up it waits the
        collection window, so that a burst leaves in few calls; a backlog (a round that took
        all it could) is drained without waiting. After a round the database failed, the first
        thing done once it answers again is to end this worker's leases, so the rows it had
        claimed are pushed again at once, not after ``lease_seconds``."""
        cfg = self.hub.config.worker
        busy = False
        failed = False
        self.release_orphaned_leases()
        while not stop.is_set():
            try:
                if failed:
                    self.release_leases()
                    failed = False
                if not busy:
                    self.upkeep()
                    if not self.has_due():
                        stop.wait(cfg.poll_interval_seconds)
                        continue
                    if stop.wait(cfg.collect_window_seconds):
                        break
                tallies = self.push_due()
                busy = any(tally.rows >= self.claim_limit(self.clients[slug]) for slug, tally in tallies.items())
            except Exception as exc:  # the database went away, or a bug: never stop pushing for good
                log.error(
                    "outbox: round failed (%s); trying again",
                    exc.__class__.__name__,
                    exc_info=not isinstance(exc, (SQLAlchemyError, StoreError)),
                )
                busy = False
                failed = isinstance(exc, (SQLAlchemyError, StoreError))  # a bug keeps the lease's pace
                stop.wait(cfg.poll_interval_seconds)

    def release_leases(self) -> None:
        """End this worker's leases (it holds no claim in hand: its round failed)."""
        with self.hub.sessions.begin() as session:
            released = release_leases(session, owner=self.owner)
        if released:
            log.info("outbox: %d row(s) claimed by a failed round are due again", released)

    def drain(self) -> dict[str, Tally]:
        """Push everything due now, round after round, then return (``optout-hub sync``).
        It ends when nothing is due, or when a round only put rows back for a retry."""
        self.upkeep()
        totals = {slug: Tally() for slug in self.clients}
        while tallies := self.push_due():
            for slug, tally in tallies.items():
                totals[slug].add(tally)
            if all(tally.retried == tally.rows for tally in tallies.values()):
                break
        return totals

    def upkeep(self) -> None:
        """The worker's other queues: HubSpot contact ids from its webhooks become recorded
        events (and so pushes), Constant Contact is polled when due (it sends no webhooks;
        the puller shares the client's tokens, pace and budget), queued confirmation mail goes
        to the relay, consent changes to the ``[[subscribers]]``, and about hourly expired
        evidence is purged (``[retention] evidence_days``)."""
        if self.hub.config.providers.hubspot.enabled:
            resolve_pending_lookups(self.hub, self.http)
        cc = self.clients.get(constant_contact.SLUG)
        if isinstance(cc, constant_contact.ConstantContactClient):
            poll_due(self.hub, constant_contact.ConstantContactPuller(cc.api))
        send_due_confirmations(self.hub)
        now = self.hub.clock()
        if self.purged_at is None or now - self.purged_at >= RETENTION_INTERVAL:
            self.purged_at = now
            purge_expired_evidence(self.hub)
        if self.hub.config.subscribers:
            deliver_due(self.hub, self.http, backoff=self.backoff)
        self.compact()

    def compact(self) -> int:
        """One bounded step of outbox compaction (:mod:`adapters.store.compaction`), once a
        minute, or at once again while settled rows are left over; returns the rows moved."""
        cfg, now = self.hub.config.worker, self.hub.clock()
        if not cfg.compact or (self.next_compaction is not None and now < self.next_compaction):
            return 0
        before = now - timedelta(seconds=cfg.compact_after_seconds)
        with self.hub.sessions.begin() as session:
            moved = compact_settled(session, before=before, limit=cfg.compact_batch)
        self.next_compaction = now if moved >= cfg.compact_batch else now + COMPACT_EVERY
        return moved

    def has_due(self) -> bool:
        now = self.hub.clock()
        with self.hub.sessions() as session:
            return session.execute(_due(select(OutboxRow.id), list(self.clients), now).limit(1)).first() is not None

    def push_due(self) -> dict[str, Tally]:
        """One round: claim and push each provider's due rows. Empty when nothing was due."""
        tallies = {}
        for slug, client in self.clients.items():
            rows = self.claim(slug, self.claim_limit(client))
            if rows:
                tallies[slug] = self.push(client, rows)
        return tallies

    @staticmethod
    def claim_limit(client: PushClient) -> int:
        """Rows per provider and round: ten batch calls' worth, at most ``CLAIM_MAX``."""
        return min(CLAIM_MAX, client.batch_size * 10)

    # Claim, push, settle ----------------------------------------------------------------

    def claim(self, provider: str, limit: int) -> list[Claimed]:
        now = self.hub.clock()
        lease_until = now + timedelta(seconds=self.hub.config.worker.lease_seconds)
        cols = (
            OutboxRow.id,
            OutboxRow.email,
            OutboxRow.scope,
            OutboxRow.action,
            OutboxRow.attempts,
            OutboxRow.received_at,
        )
        with self.hub.sessions.begin() as session:
            stmt = _due(select(*cols), [provider], now).order_by(OutboxRow.due_at, OutboxRow.id).limit(limit)
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = session.execute(stmt).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            table = OutboxRow.__table__
            session.connection().execute(
                update(table)
                .where(table.c.id.in_(ids))
                .values(lease_until=lease_until, lease_owner=self.owner, attempts=table.c.attempts + 1)
            )
        return [Claimed(r.id, r.email, r.scope, r.action, r.attempts + 1, r.received_at) for r in rows]

    def push(self, client: PushClient, rows: Sequence[Claimed]) -> Tally:
        """Push claimed rows of one provider: for each address and scope, the state the store
        holds now (its rows collapse into one push), a batch call per scope, action and chunk.

        The lease on the rows is renewed while they are worked through, and each chunk is
        pushed only for the rows this worker still holds.
        """
        tally = Tally()
        by_key: dict[Key, list[Claimed]] = {}
        for row in sorted(rows, key=lambda r: r.id):
            by_key.setdefault(row.key, []).append(row)
        groups: dict[tuple[str, str], list[Key]] = {}
        with self.hub.sessions() as session:
            desired = desired_states(session, by_key.keys())
            for key, claimed in by_key.items():
                want = desired.get(key)
                groups.setdefault((key[1], want.action if want else claimed[-1].action), []).append(key)
            lifted = [
                email_key for (_, action), keys in groups.items() if action == "resubscribe" for email_key, _ in keys
            ]
            still_out = held_scopes(session, lifted) if lifted else {}
        # Global pushes first: a lifted global opt-out undone at a provider must not undo a
        # topic opt-out pushed in the same round (SendGrid's "groups" mode shares their groups).
        ordered = sorted(groups.items(), key=lambda item: item[0][0] != GLOBAL_SCOPE)
        with LeaseKeeper(self, [r.id for r in rows]) as lease:
            for (scope, action), keys in ordered:
                for chunk in _chunks(keys, client.batch_size):
                    held = lease.renew([r.id for key in chunk for r in by_key[key]])
                    chunk = [key for key in chunk if any(r.id in held for r in by_key[key])]
                    if not chunk:
                        continue
                    results = self._call(client, scope, action, [by_key[key][-1].email for key in chunk], still_out)
                    claimed = [r for key in chunk for r in by_key[key] if r.id in held]
                    versions = {key: desired[key].version for key in chunk if key in desired}
                    result = self.settle(client.slug, claimed, results, versions)
                    lease.release(r.id for r in claimed)
                    statuses = sorted({str(r.status) for r in results.values()})
                    log.info(
                        "push %s %s %s: %d rows, status %s, done=%d retry=%d dead=%d requeued=%d",
                        client.slug,
                        action,
                        scope,
                        len(claimed),
                        "/".join(statuses),
                        result.pushed,
                        result.retried,
                        result.dead,
                        result.requeued,
                    )
                    tally.add(result)
        return tally

    @staticmethod
    def _call(
        client: PushClient, scope: str, action: str, emails: Sequence[str], held: Mapping[str, set[str]]
    ) -> Mapping[str, PushResult]:
        """The provider's answer per address; a failed call answers the same for each.
        ``held``: the scopes each address is still opted out of (see :meth:`PushClient.push`)."""
        try:
            return client.push(scope, action, emails, held=held)
        except ProviderAPIError as exc:
            failed = result_for_error(exc)
        except Exception:  # an answer we cannot read: retry with back-off
            log.exception("push %s %s %s: unexpected failure", client.slug, action, scope)
            failed = PushResult(Outcome.RETRY, None, "unexpected failure; see the worker log")
        return {address_key(e): failed for e in emails}

    def settle(
        self,
        provider: str,
        rows: Sequence[Claimed],
        results: Mapping[str, PushResult],
        versions: Mapping[Key, int] | None = None,
    ) -> Tally:
        """Mark each row done, due again later, or dead, in one transaction, and count it.

        ``versions`` holds the state version pushed per address and scope: a row is done only
        if that version is still current when it is settled (read, on PostgreSQL under a share
        lock, in the settling transaction); otherwise it is due again at once, to push the
        newer state. A done push also settles the older pending rows of its address and scope.
        Transient failures are retried with capped back-off, never given up (README
        "Push-back"); ``dead`` is only for answers no retry can fix. Rows that share an answer
        share one UPDATE (and one back-off draw); the lease owner in the WHERE clause leaves
        alone a row that another worker reclaimed after this one's lease ran out.
        """
        cfg = self.hub.config.worker
        versions = versions or {}
        now = self.hub.clock()
        tally = Tally()
        latencies = []
        missing = PushResult(Outcome.RETRY, None, "no answer for this address")
        table = OutboxRow.__table__
        with self.hub.sessions.begin() as session:
            current = desired_states(session, versions.keys(), lock=True)
            groups: dict[tuple[str, datetime, int | None, str | None], list[int]] = {}
            delays: dict[tuple[int, float | None], datetime] = {}
            settled: dict[Key, int] = {}
            for row in rows:
                result = results.get(row.key[0], missing)
                outcome, due, detail = result.outcome, now, result.detail
                pushed = versions.get(row.key)
                now_version = current.get(row.key)
                if (
                    outcome is Outcome.DONE
                    and pushed is not None
                    and (now_version is None or now_version.version != pushed)
                ):
                    state, detail = "pending", "the state changed during the push; pushing the current one"
                    tally.requeued += 1
                elif outcome is Outcome.RETRY:
                    key = (row.attempts, result.retry_after)
                    due = delays.setdefault(key, now + timedelta(seconds=self.backoff(*key)))
                    state = "pending"
                    tally.retried += 1
                    if row.attempts == cfg.max_attempts:
                        log.warning(
                            "push %s row %d: still failing after %d attempts (overdue); retrying: %s",
                            provider,
                            row.id,
                            row.attempts,
                            detail,
                        )
                elif outcome is Outcome.DEAD:
                    state = "dead"
                    tally.dead += 1
                    tally.failures.append((row.id, row.email, row.scope, detail))
                else:
                    state = "done"
                    tally.pushed += 1
                    if pushed is not None:
                        settled[row.key] = pushed
                    if result.status is not None and 200 <= result.status < 300:
                        latencies.append((now - row.received_at).total_seconds())
                groups.setdefault((state, due, result.status, detail or None), []).append(row.id)
            for (state, due, status, error), ids in groups.items():
                stmt = (
                    update(table)
                    .where(table.c.id.in_(ids), table.c.lease_owner == self.owner, table.c.state == "pending")
                    .values(
                        state=state,
                        due_at=due,
                        done_at=now if state == "done" else None,
                        lease_until=None,
                        last_status=status,
                        last_error=error,
                    )
                )
                session.connection().execute(stmt)
            own = {row.id for row in rows}
            covered = [i for i in covered_rows(session, provider, settled, owner=self.owner, now=now) if i not in own]
            if covered:
                session.connection().execute(
                    update(table)
                    .where(table.c.id.in_(covered), table.c.state == "pending")
                    .values(
                        state="done", done_at=now, lease_until=None, last_error="settled by a later push of its state"
                    )
                )
                tally.covered = len(covered)
        metrics = self.hub.metrics
        for result_name, count in (
            ("done", tally.pushed),
            ("retry", tally.retried + tally.requeued),
            ("dead", tally.dead),
        ):
            if count:
                metrics.push.labels(provider, result_name).inc(count)
        for seconds in latencies:
            metrics.push_latency.observe(max(seconds, 0.0))
        return tally

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: exponential from the base, capped, jittered
        (half to full), and never sooner than the provider's ``Retry-After``."""
        delay = self.hub.config.worker.retry_delay(attempts) * (0.5 + self.rng() / 2)
        return max(delay, retry_after or 0.0)


def _due(stmt: Select[Any], providers: Sequence[str], now: datetime) -> Select[Any]:
    """Rows of ``providers`` that are pending, due, and not under a live lease."""
    return stmt.where(
        OutboxRow.state == "pending",
        OutboxRow.provider.in_(providers),
        OutboxRow.due_at <= now,
        or_(OutboxRow.lease_until.is_(None), OutboxRow.lease_until <= now),
    )


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


class LeaseKeeper:
    """Keeps a worker's lease on the rows of one claim while it works through them: a thread
    renews the lease of the rows not yet settled every third of ``lease_seconds``, and
    :meth:`renew` (before each call) says which rows the worker still holds."""

    def __init__(self, worker: Worker, ids: Iterable[int]) -> None:
        self.worker = worker
        self.ids = set(ids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="outbox-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def renew(self, ids: Iterable[int]) -> set[int]:
        """Extend the lease on ``ids``; the ones this worker still holds."""
        hub = self.worker.hub
        until = hub.clock() + timedelta(seconds=hub.config.worker.lease_seconds)
        with hub.sessions.begin() as session:
            held = renew_leases(session, list(ids), owner=self.worker.owner, until=until)
        with self._lock:
            self.ids -= set(ids) - held
        return held

    def release(self, ids: Iterable[int]) -> None:
        with self._lock:
            self.ids -= set(ids)

    def _keep(self) -> None:
        while not self._stop.wait(self.worker.hub.config.worker.lease_seconds / 3):
            with self._lock:
                ids = list(self.ids)
            if not ids:
                continue
            try:
                self.renew(ids)
            except Exception as exc:  # the next renewal, or the claim's end, will tell
                log.warning("outbox: renewing a lease failed (%s)", exc.__class__.__name__)

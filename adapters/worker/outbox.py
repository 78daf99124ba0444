"""The push worker's loop: outbox rows written by :func:`adapters.store.record.record_events`, pushed.

A row's life: ``pending`` → claimed under a lease (``lease_until``, ``lease_owner``) → pushed →
``done``, ``pending`` again with a later ``due_at`` (retry), or ``dead`` (kept with the
provider's answer until an admin retries it). A row whose worker died mid-push is claimed
again once its lease has run out, so nothing is lost; providers' calls are idempotent, so a
second push does no harm.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from adapters.addresses import address_key
from adapters.errors import ProviderAPIError, StoreError
from adapters.hub import Hub
from adapters.providers.client import Outcome, PushClient, PushResult, result_for_error
from adapters.store.models import OutboxRow
from adapters.worker.confirmations import send_due_confirmations
from adapters.worker.lookups import resolve_pending_lookups

log = logging.getLogger(__name__)

CLAIM_MAX = 1000  # rows one worker takes per provider and round (bounds the work under one lease)


# --- the worker: claim, push in batches, settle ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Claimed:
    id: int
    email: str
    scope: str
    action: str
    attempts: int  # including this one
    received_at: datetime


@dataclasses.dataclass
class Tally:
    """What one provider's pushes came to; ``failures`` lists the rows that went dead."""

    pushed: int = 0
    retried: int = 0
    dead: int = 0
    failures: list[tuple[int, str, str, str]] = dataclasses.field(default_factory=list)  # (row, email, scope, detail)

    @property
    def rows(self) -> int:
        return self.pushed + self.retried + self.dead

    def add(self, other: Tally) -> None:
        self.pushed += other.pushed
        self.retried += other.retried
        self.dead += other.dead
        self.failures.extend(other.failures)


def worker_id() -> str:
    """A lease owner unique to this process and worker: ``host:pid:random``."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Pushes due outbox rows to the providers.

    Each round claims up to ``CLAIM_MAX`` due rows per provider under a lease (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL, so concurrent workers take disjoint rows; SQLite's write lock
    serializes claims), groups them by scope and action into the provider's batch calls, and
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

    # The loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set. An idle worker polls; when rows turn up it waits the
        collection window, so that a burst leaves in few calls; a backlog (a round that took
        all it could) is drained without waiting."""
        cfg = self.hub.config.worker
        busy = False
        while not stop.is_set():
            try:
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
                stop.wait(cfg.poll_interval_seconds)

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
        events (and so pushes), and queued confirmation mail goes to the relay."""
        if self.hub.config.providers.hubspot.enabled:
            resolve_pending_lookups(self.hub, self.http)
        send_due_confirmations(self.hub)

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
        """Push claimed rows of one provider, a batch call per scope, action and chunk."""
        tally = Tally()
        latest: dict[tuple[str, str], Claimed] = {}
        superseded: list[Claimed] = []
        for row in sorted(rows, key=lambda r: r.id):
            key = (address_key(row.email), row.scope)
            if key in latest:
                superseded.append(latest[key])  # a later change of the same address and scope wins
            latest[key] = row
        if superseded:
            tally.add(
                self.settle(
                    client.slug,
                    superseded,
                    {
                        address_key(r.email): PushResult(Outcome.DONE, None, "superseded by a later change")
                        for r in superseded
                    },
                )
            )
        groups: dict[tuple[str, str], list[Claimed]] = {}
        for row in latest.values():
            groups.setdefault((row.scope, row.action), []).append(row)
        for (scope, action), group in groups.items():
            for chunk in _chunks(group, client.batch_size):
                try:
                    results = client.push(scope, action, [r.email for r in chunk])
                except ProviderAPIError as exc:
                    failed = result_for_error(exc)
                    results = {address_key(r.email): failed for r in chunk}
                except Exception:  # an answer we cannot read: retry with back-off, dead after max_attempts
                    log.exception("push %s %s %s: unexpected failure", client.slug, action, scope)
                    failed = PushResult(Outcome.RETRY, None, "unexpected failure; see the worker log")
                    results = {address_key(r.email): failed for r in chunk}
                result = self.settle(client.slug, chunk, results)
                statuses = sorted({str(r.status) for r in results.values()})
                log.info(
                    "push %s %s %s: %d rows, status %s, done=%d retry=%d dead=%d",
                    client.slug,
                    action,
                    scope,
                    len(chunk),
                    "/".join(statuses),
                    result.pushed,
                    result.retried,
                    result.dead,
                )
                tally.add(result)
        return tally

    def settle(self, provider: str, rows: Sequence[Claimed], results: Mapping[str, PushResult]) -> Tally:
        """Mark each row done, due again later, or dead, in one transaction, and count it.

        Rows that share an answer share one UPDATE (and one back-off draw: they were pushed
        together and will be again); the lease owner in the WHERE clause leaves alone a row
        that another worker reclaimed after this one's lease ran out.
        """
        cfg = self.hub.config.worker
        now = self.hub.clock()
        tally = Tally()
        groups: dict[tuple[str, datetime, int | None, str | None], list[int]] = {}
        delays: dict[tuple[int, float | None], datetime] = {}
        latencies = []
        missing = PushResult(Outcome.RETRY, None, "no answer for this address")
        for row in rows:
            result = results.get(address_key(row.email), missing)
            outcome, due, detail = result.outcome, now, result.detail
            if outcome is Outcome.RETRY and row.attempts >= cfg.max_attempts:
                outcome, detail = Outcome.DEAD, f"gave up after {row.attempts} attempts: {detail}"
            if outcome is Outcome.RETRY:
                key = (row.attempts, result.retry_after)
                due = delays.setdefault(key, now + timedelta(seconds=self.backoff(*key)))
                tally.retried += 1
            elif outcome is Outcome.DEAD:
                tally.dead += 1
                tally.failures.append((row.id, row.email, row.scope, detail))
            else:
                tally.pushed += 1
                if result.status is not None and 200 <= result.status < 300:
                    latencies.append((now - row.received_at).total_seconds())
            state = "pending" if outcome is Outcome.RETRY else outcome.value
            groups.setdefault((state, due, result.status, detail or None), []).append(row.id)
        table = OutboxRow.__table__
        with self.hub.sessions.begin() as session:
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
        metrics = self.hub.metrics
        for result_name, count in (("done", tally.pushed), ("retry", tally.retried), ("dead", tally.dead)):
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


def _chunks(items: Sequence[Claimed], size: int) -> Iterator[Sequence[Claimed]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]

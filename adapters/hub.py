"""The wired core of one process: config, database, token signer, metrics, clock.

Built once by the entry point (CLI, ``webhooks.create_app``) and passed to every part, with
the two steps they share: recording in a transaction then counting (:meth:`Hub.record_with`)
and claiming due rows of a retry queue under the worker's lease (:meth:`Hub.claim_due`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Engine, Select, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adapters.compliance.deadlines import Limits
from adapters.config import Config
from adapters.errors import ConfigError, StoreError
from adapters.events import OptOutEvent, utcnow
from adapters.metrics import Metrics
from adapters.store import database
from adapters.store.bulk import insert_statement
from adapters.store.constant_contact import status as cc_status
from adapters.store.erasure import KEY_CHECK_SETTING, key_check
from adapters.store.inbound_backlog import oldest_pending_age
from adapters.store.leases import Q, claim_due
from adapters.store.models import InstanceSetting, OutboxRow, PendingLookup
from adapters.store.outbox import oldest_unsettled, unsettled_received_before
from adapters.store.record import RecordResult, StorePolicy, record_events
from adapters.tokens import TokenSigner

log = logging.getLogger(__name__)
T = TypeVar("T")
D = TypeVar("D")
GENERATED_SECRET = "token_secret"


@dataclasses.dataclass
class Hub:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    signer: TokenSigner
    metrics: Metrics
    policy: StorePolicy
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        upgrade: bool | None = None,
    ) -> Hub:
        """Connect to the database and build the signer.

        ``upgrade`` migrates the schema first; by default only an SQLite database is migrated
        on start (PostgreSQL deployments run ``optout-hub db upgrade`` once).
        """
        engine = database.make_engine(config.database.url)
        if upgrade if upgrade is not None else engine.dialect.name == "sqlite":
            database.upgrade(engine)
        sessions = database.make_sessionmaker(engine)
        signer = TokenSigner(_token_secrets(config, sessions))
        try:
            _check_erasure_key(config, engine, sessions)
        except ConfigError:
            engine.dispose()  # start-up stops here: close what it opened
            raise
        metrics = metrics or Metrics()
        hub = cls(config, engine, sessions, signer, metrics, StorePolicy.from_config(config), clock)
        metrics.watch_backlog(hub.outbox_pending, hub.lookups_pending, hub.oldest_unsettled)
        metrics.watch_outbox(hub.outbox_dead, hub.outbox_oldest_pending)
        metrics.watch_inbound(hub.inbound_oldest_pending_age)
        metrics.watch_overdue(hub.requests_overdue)
        metrics.watch_budget(hub.budgets_remaining)
        return hub

    def record(self, events: Sequence[OptOutEvent]) -> RecordResult:
        """Record events in a transaction of their own and count them once committed."""
        return self.record_with(lambda session: record_events(session, events, self.policy, now=self.clock()))

    def record_with(self, work: Callable[[Session], RecordResult], *, what: str = "record events") -> RecordResult:
        """Run ``work`` in one transaction, then count the events it stored once committed.

        ``work`` records events (:func:`record_events`) together with whatever must be stored
        with them: the raw evidence, a confirmation, a settled queue row. A database failure
        is a :class:`StoreError` (``could not <what>``), so the edge answers 451 or 503.
        """
        try:
            with self.sessions.begin() as session:
                result = work(session)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {what}: {exc.__class__.__name__}") from exc
        self.count_events(result)
        return result

    def count_events(self, result: RecordResult) -> None:
        """Count stored events; call after the transaction that stored them has committed."""
        for source, kind, n in result.counts:
            self.metrics.events.labels(source, kind).inc(n)

    def claim_due(self, model: type[Q], *conditions: ColumnElement[bool], now: datetime, limit: int) -> list[Q]:
        """Up to ``limit`` due rows of a retry queue, claimed in a transaction of their own for
        the worker's lease (:func:`adapters.store.leases.claim_due`)."""
        until = now + timedelta(seconds=self.config.worker.lease_seconds)
        with self.sessions.begin() as session:
            return claim_due(session, model, *conditions, now=now, until=until, limit=limit)

    def outbox_pending(self) -> list[tuple[str, int]]:
        """Outbox rows not yet pushed, per enabled provider (for the metrics)."""
        return self._per_provider(
            select(OutboxRow.provider, func.count()).where(OutboxRow.state == "pending").group_by(OutboxRow.provider), 0
        )

    def outbox_dead(self) -> list[tuple[str, int]]:
        """Outbox rows gone dead (no retry can fix them; an admin must act), per provider."""
        return self._per_provider(
            select(OutboxRow.provider, func.count()).where(OutboxRow.state == "dead").group_by(OutboxRow.provider), 0
        )

    def outbox_oldest_pending(self) -> list[tuple[str, float]]:
        """Seconds the oldest outbox row not yet pushed has waited since it was queued, per
        enabled provider (0 when none)."""
        oldest = self._per_provider(
            select(OutboxRow.provider, func.min(OutboxRow.created_at).label("oldest"))
            .where(OutboxRow.state == "pending")
            .group_by(OutboxRow.provider),
            None,
        )
        now = self.clock()
        return [(p, max((now - at).total_seconds(), 0.0) if at else 0.0) for p, at in oldest]

    def oldest_unsettled(self) -> list[tuple[str, float]]:
        """Seconds since the oldest opt-out not yet confirmed by each enabled provider reached us."""
        try:
            with self.sessions() as session:
                oldest = oldest_unsettled(session)
        except SQLAlchemyError:
            log.warning("metrics: database unavailable")
            return []
        now = self.clock()
        return [
            (p, max((now - oldest[p]).total_seconds(), 0.0) if p in oldest else 0.0)
            for p in self.config.providers.enabled()
        ]

    def requests_overdue(self) -> dict[str, int] | None:
        """Opt-outs not yet confirmed by every provider that are past each limit (README
        "Compliance"), now; ``None`` while the database cannot answer."""
        limits = Limits(self.config.compliance.holiday_dates())
        try:
            with self.sessions() as session:
                return unsettled_received_before(session, limits.overdue_before(self.clock()))
        except SQLAlchemyError:
            log.warning("metrics: database unavailable")
            return None

    def lookups_pending(self) -> list[tuple[str, int]]:
        """Provider events still waiting for their contact's address (HubSpot), per provider."""
        return self._per_provider(select(PendingLookup.provider, func.count()).group_by(PendingLookup.provider), 0)

    def inbound_oldest_pending_age(self) -> float | None:
        """Seconds the oldest stored but unclassified inbound message has waited (0: none);
        ``None`` while the database cannot answer (for the metrics and ``/admin``)."""
        try:
            with self.sessions() as session:
                return oldest_pending_age(session, self.clock())
        except SQLAlchemyError:
            log.warning("metrics: database unavailable")
            return None

    def budgets_remaining(self) -> list[tuple[str, float]]:
        """Calls left today for the providers with a daily limit (Constant Contact), for the metrics."""
        cfg = self.config.providers.constant_contact
        if not cfg.enabled:
            return []
        try:
            with self.sessions() as session:
                return [("constant_contact", float(cc_status(session, cfg, self.clock()).budget_remaining))]
        except SQLAlchemyError:
            log.warning("metrics: database unavailable")
            return []

    def _per_provider(self, stmt: Select[tuple[str, T]], default: D) -> list[tuple[str, T | D]]:
        """One value per enabled provider (``default`` where the query has none); nothing
        while the database cannot answer, so the metrics show no sample rather than a 0."""
        try:
            with self.sessions() as session:
                values = dict(session.execute(stmt).tuples().all())
        except SQLAlchemyError:
            log.warning("metrics: database unavailable")
            return []
        return [(p, values.get(p, default)) for p in self.config.providers.enabled()]

    def close(self) -> None:
        self.engine.dispose()


def _token_secrets(config: Config, sessions: sessionmaker[Session]) -> list[bytes]:
    """The configured token secrets, or one generated on first start and kept in the database
    (so the embedded default works with no configuration and survives restarts)."""
    sec = config.security
    if sec.token_secret is not None:
        return [sec.token_secret.reveal().encode()] + [s.reveal().encode() for s in sec.previous_token_secrets]
    with sessions.begin() as session:
        session.execute(
            insert_statement(session, InstanceSetting).on_conflict_do_nothing(index_elements=["name"]),
            [{"name": GENERATED_SECRET, "value": secrets.token_urlsafe(32)}],
        )
        value = session.get_one(InstanceSetting, GENERATED_SECRET).value
    log.info("no token secret configured (%s): using the instance's generated secret", sec.token_secret_env)
    return [value.encode()]


def _check_erasure_key(config: Config, engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Once an address was erased, start only with the key it was hashed with: under none, or
    another, the hub would no longer recognise erased addresses and would mail them again."""
    if not inspect(engine).has_table(InstanceSetting.__tablename__):
        return  # a schema not created yet (PostgreSQL before ``db upgrade``): nothing erased
    with sessions() as session:
        stored = session.get(InstanceSetting, KEY_CHECK_SETTING)
    key = config.security.erasure_key
    if stored is not None and (key is None or stored.value != key_check(key.reveal().encode())):
        raise ConfigError(
            "security.erasure_key_env", "addresses were erased under a key: set it to that key (else they are mailed)"
        )

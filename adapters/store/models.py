"""The store's tables (SQLAlchemy 2.0 typed models). Migrations live in ``adapters/store/migrations``.

- ``events``: append-only log of every request, unique on (email_key, source,
  provider_event_id).
- ``consent_conflicts``: resubscribes that changed nothing for want of proof (for /admin).
- ``suppressions``: current state per (address, scope), written in the same transaction as
  the events that change it.
- ``recipients``: what an unsubscribe token points at (address, topic, campaign).
- ``evidence``: raw inbound messages and webhook payloads, kept for audit; inbound messages
  wait here (state ``pending``) until classified, and ambiguous ones (``review``) for an admin.
- ``pending_lookups``: provider events that name a contact id, not an address, until the
  worker resolves them (HubSpot).
- ``outbox``: one row per (event, provider) to push, claimed by workers under a lease.
- ``instance_settings``: generated instance secrets (the token key when none is configured).
- ``confirmation_sends``: one row per address and UTC day a confirmation mail went out.
- ``reconcile_checkpoints``, ``reconcile_snapshots``: where each provider's pull stands, and
  the last full list of each provider list that can only be read whole (README "Reconciliation").
- ``delivery_blocks``: per address, its complaints and hard bounces (what may stop
  transactional mail, README "Campaign and transactional mail").
- ``erased_subjects``: the keyed hash of every erased address (README "Erasure").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from adapters.consent import effective_time

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

REASON_KEY_CHARS = 200  # event_counts groups reasons by their first 200 characters
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}
    __table__: ClassVar[Table]  # every model here maps one table (SQLAlchemy types it as any FromClause)


class Evidence(Base):
    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # smtp, webhook, http, api, import
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    content: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(120), default="")
    meta: Mapped[dict[str, Any] | None]
    state: Mapped[str] = mapped_column(String(16), default="done", index=True)
    result: Mapped[dict[str, Any] | None]
    processed_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))  # the admin who decided a review item

    def __repr__(self) -> str:
        return f"<Evidence {self.id} {self.channel}/{self.source} {self.state}>"


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16))
    verification: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(16))  # adapters.events.Actor; NULL before 0008
    provider_event_id: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)  # the rate reports' date range
    reason: Mapped[str | None] = mapped_column(Text)
    campaign: Mapped[str | None] = mapped_column(String(200))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    meta: Mapped[dict[str, Any] | None]

    # One index serves both an address's history (led by email_key) and deduplication: a
    # provider's event id names one event for one address, so (source, id) is unique exactly
    # when (email_key, source, id) is. One random-key insert per event instead of two.
    __table_args__ = (UniqueConstraint("email_key", "source", "provider_event_id"),)

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.kind} {self.scope} {self.source}>"


class ConsentConflict(Base):
    """A resubscribe that faced an opt-out it may not lift (README "Consent"): stored as
    evidence, it changed nothing, and the opt-out was queued back to the provider it came from."""

    __tablename__ = "consent_conflicts"
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id"), primary_key=True)
    opt_out_source: Mapped[str] = mapped_column(String(16))  # source of the opt-out in force
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ConsentConflict {self.event_id}>"


class Suppression(Base):
    __tablename__ = "suppressions"
    email_key: Mapped[str] = mapped_column(String(254), primary_key=True)
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    suppressed: Mapped[bool]
    kind: Mapped[str] = mapped_column(String(16))  # kind of the event that set the state
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    first_at: Mapped[datetime]  # first opt-out at this scope
    last_at: Mapped[datetime] = mapped_column(index=True)  # occurrence of the last change
    event_id: Mapped[int] = mapped_column(BigId)

    def __repr__(self) -> str:
        return f"<Suppression {self.scope} {'on' if self.suppressed else 'off'}>"


class Recipient(Base):
    __tablename__ = "recipients"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254))
    topic: Mapped[str] = mapped_column(String(100), default="")  # "" for none
    campaign: Mapped[str] = mapped_column(String(200), default="")  # "" for none
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("email_key", "topic", "campaign"),)

    def __repr__(self) -> str:
        return f"<Recipient {self.id}>"


class PendingLookup(Base):
    __tablename__ = "pending_lookups"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(64))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[dict[str, Any]]  # the OptOutEvent fields other than the address
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("provider", "provider_event_id"),)

    def __repr__(self) -> str:
        return f"<PendingLookup {self.id} {self.provider} {self.object_id}>"


class OutboxRow(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    provider: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # unsubscribe | resubscribe
    email: Mapped[str] = mapped_column(String(254))
    scope: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | done | dead
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]  # when the original request reached us (latency metric)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    retried_by: Mapped[str | None] = mapped_column(String(200))  # the admin who last retried it when dead
    retried_at: Mapped[datetime | None]

    # AUTOINCREMENT on SQLite: an id is never handed out again once compaction moved its row
    # to push_confirmations, which keeps it (migration 0018_outbox_ids_not_reused).
    __table_args__ = (
        Index("ix_outbox_state_provider_due_at", "state", "provider", "due_at"),
        {"sqlite_autoincrement": True},
    )

    def __repr__(self) -> str:
        return f"<OutboxRow {self.id} {self.provider} {self.action} {self.state}>"


class PushConfirmation(Base):
    """A settled push, moved out of the outbox by compaction (:mod:`adapters.store.compaction`):
    what the audit, ``report honour``, reconciliation and the dashboard need of it, and nothing
    bulky. The address is its event's (``events.email_key``, which erasure renames); the action
    and scope are its own (a resubscribe or a lifted global opt-out queues rows at other
    scopes, and a refused resubscribe queues an opt-out). Its id is the outbox row's; it always
    settled ``done``."""

    __tablename__ = "push_confirmations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    event_id: Mapped[int] = mapped_column(BigId, index=True)
    provider: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # unsubscribe | resubscribe
    scope: Mapped[str] = mapped_column(String(100))
    attempts: Mapped[int]
    received_at: Mapped[datetime]  # when the request reached us (push latency)
    created_at: Mapped[datetime]  # queued
    done_at: Mapped[datetime]  # confirmed
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<PushConfirmation {self.id} {self.provider} event {self.event_id}>"


class InstanceSetting(Base):
    __tablename__ = "instance_settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ConfirmationSend(Base):
    """One confirmation mail: at most one per address and UTC day, claimed in the transaction
    that records the opt-out, then sent by the worker (``pending`` → ``sent``, or ``dead``)."""

    __tablename__ = "confirmation_sends"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_key: Mapped[str] = mapped_column(String(254))
    day: Mapped[str] = mapped_column(String(10))  # UTC date, YYYY-MM-DD
    email: Mapped[str] = mapped_column(String(254))
    scope: Mapped[str] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    queued_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("email_key", "day"),
        Index("ix_confirmation_sends_state_next_attempt_at", "state", "next_attempt_at"),
    )

    def __repr__(self) -> str:
        return f"<ConfirmationSend {self.id} {self.day} {self.state}>"


class EventCount(Base):
    """Stored events per UTC day of receipt, source, kind and reason.

    Kept in step by :func:`adapters.store.record.record_events` (in the transaction that stores the
    events), so the admin dashboard sums a few rows per day instead of scanning every event.
    """

    __tablename__ = "event_counts"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC date, YYYY-MM-DD
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(REASON_KEY_CHARS), primary_key=True)  # "" for none
    n: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"sqlite_with_rowid": False},)


class RecipientCount(Base):
    """Addresses that were issued a token, per campaign and per topic.

    Kept in step by :func:`adapters.store.recipients.issue_tokens`, so the dashboard's unsubscribe
    rates read a few rows instead of counting distinct addresses over every recipient row.
    Two transactions issuing the same address for one campaign at the same moment, under
    different topics, can each count it once: a rate is then a hair low, never an opt-out lost.
    """

    __tablename__ = "recipient_counts"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # campaign | topic
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    addresses: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"sqlite_with_rowid": False},)


class OAuthToken(Base):
    """A provider's OAuth2 tokens (Constant Contact), rotated under a row lock; ``dead`` says
    why an admin must re-authorize; ``auth_state`` is the state of an authorization in
    progress. The repr never shows a token."""

    __tablename__ = "oauth_tokens"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    refresh_token: Mapped[str | None] = mapped_column(Text)
    dead: Mapped[str | None] = mapped_column(Text)
    auth_state: Mapped[str | None] = mapped_column(String(64))
    auth_state_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<OAuthToken {self.provider} {'dead' if self.dead else 'live'}>"


class ProviderContact(Base):
    """A provider's contact id for an address, learned by a lookup or a pull, so a later push
    needs no lookup (Constant Contact)."""

    __tablename__ = "provider_contacts"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    email_key: Mapped[str] = mapped_column(String(254), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64))


class ProviderBudget(Base):
    """Calls made to a provider on one UTC day by every process (Constant Contact allows 10,000
    a day), and the time before which its quota is known to be spent."""

    __tablename__ = "provider_budget"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[str] = mapped_column(String(10))  # UTC date, YYYY-MM-DD
    calls: Mapped[int]
    blocked_until: Mapped[datetime | None]


class ProviderPull(Base):
    """Where a provider's poll stands (Constant Contact): ``since`` for the next window, and
    while a pull is under way the time it started and the checkpoint it resumes from."""

    __tablename__ = "provider_pulls"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    since: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    checkpoint: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ReconcileCheckpoint(Base):
    """Where one provider's pull of one kind (``changes`` or ``full``) stands.

    ``last_success_at``: the start of the last pull that ended, the ``since`` of the next one.
    While a pull runs, ``run_started_at``, ``run_since`` and ``checkpoint`` (the provider's
    opaque resume point, written with each page's events) say where it is; a pull that died
    resumes from them. A finished pull clears them.
    """

    __tablename__ = "reconcile_checkpoints"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_success_at: Mapped[datetime | None]
    run_started_at: Mapped[datetime | None]
    run_since: Mapped[datetime | None]
    checkpoint: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ReconcileCheckpoint {self.provider} {self.kind}>"


class ReconcileSnapshot(Base):
    """One address of the last full read of a provider list without a time filter (a SendGrid
    unsubscribe group): the next read's difference is what was added or removed there."""

    __tablename__ = "reconcile_snapshots"
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    email_key: Mapped[str] = mapped_column(String(254), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))

    def __repr__(self) -> str:
        return f"<ReconcileSnapshot {self.provider} {self.name}>"


class DeliveryBlock(Base):
    """A complaint or hard bounce of an address: the facts that may stop transactional mail
    (README "Campaign and transactional mail"). Kept in step by
    :func:`adapters.store.record.record_events`; a proven resubscribe that lifts the global
    opt-out clears them. ``email_key`` is an erased address's pseudonym after erasure."""

    __tablename__ = "delivery_blocks"
    email_key: Mapped[str] = mapped_column(String(254), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # complaint | bounce
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<DeliveryBlock {self.kind}>"


class ErasedSubject(Base):
    """An erased address, known only by its keyed hash (README "Erasure"): it stays suppressed
    and its history lives on under the pseudonym ``erased:<address_hash>``."""

    __tablename__ = "erased_subjects"
    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC-SHA256, hex
    erased_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ErasedSubject {self.address_hash[:8]}>"


class ChangeSequence(Base):
    """The one row that numbers consent changes: ``last`` is the newest change's ``seq``.
    Updated by the transaction that writes changes, it is held until that transaction ends, so
    changes are numbered in the order their transactions commit (:mod:`adapters.store.changes`)."""

    __tablename__ = "change_sequence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


class Change(Base):
    """One consent change: an address's state at a scope turned (opted out, or lifted), written
    by :func:`adapters.store.record.record_events` in the transaction of the event that caused
    it; ``seq`` is its place in the change feed.

    The row holds only what the event does not: its place, the new state and when it was
    recorded. Address, scope, kind, source and actor are the event's, read through
    :attr:`event` (loaded with the change), so each change costs a third of the bytes in the
    recording transaction and an erasure that renames the event renames its changes too.
    """

    __tablename__ = "changes"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id"))
    suppressed: Mapped[bool]  # the new state
    recorded_at: Mapped[datetime]
    event: Mapped[Event] = relationship(lazy="joined", innerjoin=True)

    # the event's, as the feed shows them
    email: AssociationProxy[str] = association_proxy("event", "email")
    scope: AssociationProxy[str] = association_proxy("event", "scope")
    kind: AssociationProxy[str] = association_proxy("event", "kind")
    source: AssociationProxy[str] = association_proxy("event", "source")
    actor: AssociationProxy[str | None] = association_proxy("event", "actor")

    @property
    def occurred_at(self) -> datetime:
        """The event's effective time (README "Consent")."""
        return effective_time(self.event.occurred_at, self.event.received_at)

    def __repr__(self) -> str:
        return f"<Change {self.seq} {'on' if self.suppressed else 'off'}>"


class WebhookDelivery(Base):
    """A change to deliver to one ``[[subscribers]]`` URL, queued with the change; claimed
    under a lease (:func:`adapters.store.leases.claim_due`), ``pending`` → ``done`` or ``dead``."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    change_id: Mapped[int] = mapped_column(BigId, ForeignKey("changes.seq"))  # the change's ``seq``
    subscriber: Mapped[str] = mapped_column(Text)  # its URL
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | done | dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.state}>"

"""The one normalized opt-out event that every source produces (README "How it fits together")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from adapters.storable import storable_fields, storable_text

GLOBAL_SCOPE = "global"
TOPIC_PREFIX = "topic:"


class Kind(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    RESUBSCRIBE = "resubscribe"


class Source(StrEnum):
    SMTP = "smtp"
    ONECLICK = "oneclick"
    PREFERENCES = "preferences"
    MAILCHIMP = "mailchimp"
    SENDGRID = "sendgrid"
    HUBSPOT = "hubspot"
    CONSTANT_CONTACT = "constant_contact"
    API = "api"
    IMPORT = "import"


class Verification(StrEnum):
    TOKEN = "token"
    SIGNATURE = "signature"
    DKIM = "dkim"
    PULL = "pull"  # read back from a provider's API by reconciliation: proves no one
    NONE = "none"


class Actor(StrEnum):
    """Who acted (README "Consent"). A provider's parser says which of the last three its event
    reports, in the event's ``metadata["actor"]``; :func:`adapters.consent.actor_of` decides."""

    PERSON = "person"
    ADMIN = "admin"
    IMPORT = "import"
    STAFF = "staff"  # a provider's user: a CRM click, an admin add, an import at the provider
    AUTOMATION = "automation"  # a provider's API or workflow, or a change it does not explain


class MailCategory(StrEnum):
    """What a sender asks about in a check (README "Campaign and transactional mail")."""

    MARKETING = "marketing"  # campaigns: every opt-out stops them
    TRANSACTIONAL = "transactional"  # receipts, password resets: only complaints (and hard bounces if configured)


def topic_scope(name: str) -> str:
    """The scope string of a topic: ``topic:<name>``."""
    return f"{TOPIC_PREFIX}{name}"


def scope_topic(scope: str) -> str | None:
    """The topic name of a scope, or ``None`` for the global scope."""
    return scope[len(TOPIC_PREFIX) :] if scope.startswith(TOPIC_PREFIX) else None


def validate_scope(scope: str) -> str:
    if scope == GLOBAL_SCOPE or (scope.startswith(TOPIC_PREFIX) and len(scope) > len(TOPIC_PREFIX)):
        return scope
    raise ValueError(f"scope must be 'global' or 'topic:<name>', not {scope!r}")


def utcnow() -> datetime:
    """The default clock: aware UTC. Everything time-dependent takes a clock like this."""
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class OptOutEvent:
    """One request about one address, from one source.

    ``email`` is already normalized (see :func:`adapters.addresses.normalize_address`).
    ``provider_event_id`` makes a provider's retried delivery idempotent: the store keeps one
    event per (address key, source, provider_event_id), as a provider's event id names one
    event for one address. ``evidence_id`` points at the stored raw message
    or payload that proves the request.
    """

    email: str
    kind: Kind
    source: Source
    scope: str = GLOBAL_SCOPE
    verification: Verification = Verification.NONE
    provider_event_id: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime | None = None
    reason: str | None = None
    campaign: str | None = None
    evidence_id: int | None = None
    metadata: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        validate_scope(self.scope)
        # every source builds this event: its free text is made storable here, once for all
        # (set again only where it changed: an import builds a million of these)
        for name in ("provider_event_id", "reason", "campaign"):
            value = getattr(self, name)
            if value is not None and (text := storable_text(value)) is not value:
                object.__setattr__(self, name, text)
        if self.metadata is not None and (fields := storable_fields(self.metadata)) is not self.metadata:
            object.__setattr__(self, "metadata", fields)
        for name in ("occurred_at", "received_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")

    def replace(self, **changes: Any) -> OptOutEvent:
        return dataclasses.replace(self, **changes)

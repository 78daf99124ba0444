"""The consent model (README "Consent"): how events of one address are ordered, who acted,
and which resubscribe may lift which opt-out. :mod:`adapters.store.record` folds events with
these rules and nothing else decides them.

Order: for each address and scope (``global``, ``topic:<name>``) the state is a function of
its events in order of their *effective time*: when the event says it occurred, but never
later than when the hub received it plus :data:`MAX_CLOCK_SKEW` (a sender's clock may run a
little fast; a date beyond that would otherwise outrank every real request until it came
round), then storage order (event id).

Precedence: an opt-out by anyone counts at once. An opt-out is lifted only by a later
resubscribe proven to come from the person: the preference centre with a valid token; an
admin, named, with a reason (the API); or a provider's signed event that reports the
person's own action, lifting an opt-out that came from that same provider. Any other
resubscribe changes nothing: it is kept as evidence, listed as a conflict, and the opt-out
is pushed back to the provider that re-added the person.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from adapters.events import Actor, OptOutEvent, Source, Verification

MAX_CLOCK_SKEW = timedelta(minutes=5)
PROVIDER_SOURCES = frozenset(
    {Source.MAILCHIMP.value, Source.SENDGRID.value, Source.HUBSPOT.value, Source.CONSTANT_CONTACT.value}
)
# IMPORT: a provider's own export loaded with ``import --source <provider>``
_PROVIDER_ACTORS = frozenset({Actor.PERSON.value, Actor.STAFF.value, Actor.AUTOMATION.value, Actor.IMPORT.value})


def effective_time(occurred_at: datetime, received_at: datetime) -> datetime:
    """The time an event is ordered by: ``occurred_at`` clamped to ``received_at`` + skew."""
    return min(occurred_at, received_at + MAX_CLOCK_SKEW)


def actor_of(event: OptOutEvent) -> Actor:
    """Who acted. An API call is an admin's when it names one (``metadata["admin"]``), else
    staff; a provider's event is what its parser reported, and automation when it reported
    nothing; mail, one-click and the preference centre are the person (their proof is the
    event's verification)."""
    meta = event.metadata or {}
    if event.source is Source.IMPORT:
        return Actor.IMPORT
    if event.source is Source.API:
        named = isinstance(meta.get("admin"), str) and meta["admin"].strip()
        return Actor.ADMIN if named else Actor.STAFF
    if event.source.value in PROVIDER_SOURCES:
        claimed = meta.get("actor")
        return Actor(claimed) if claimed in _PROVIDER_ACTORS else Actor.AUTOMATION
    return Actor.PERSON


def may_lift(
    *,
    source: str,
    verification: str,
    actor: str | None,
    reason: str | None,
    opt_out_source: str,
    person_providers: Collection[str] = PROVIDER_SOURCES,
) -> bool:
    """Whether a resubscribe (by ``source``, proven by ``verification``, done by ``actor``)
    may lift an opt-out that came from ``opt_out_source``. ``person_providers`` are the
    providers whose reports of the person's own action are trusted (configurable, only
    toward fewer)."""
    if source == Source.PREFERENCES.value:
        return verification == Verification.TOKEN.value and actor == Actor.PERSON.value
    if source == Source.API.value:
        return actor == Actor.ADMIN.value and bool(reason)
    if source in PROVIDER_SOURCES and source in person_providers:
        return (
            actor == Actor.PERSON.value
            and verification in (Verification.SIGNATURE.value, Verification.TOKEN.value)
            and opt_out_source == source
        )
    return False

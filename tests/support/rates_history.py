"""A seeded history for the unsubscribe-rate reports, whose numbers the tests work out by hand.

Recorded through the real store (tokens issued, events recorded) on 2026-11-01 .. 2026-11-24;
:data:`RANGE` (2026-11-20 .. 2026-11-24) leaves out one opt-out on 2026-11-10. Topics are
:data:`tests.support.pages.TOPICS` (``newsletter``, ``offers``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from tests.support.clock import Clock
from tests.support.pages import issue_token

RANGE = (date(2026, 11, 20), date(2026, 11, 24))
NEWSLETTER = topic_scope("newsletter")


def _at(clock: Clock, day: int) -> None:
    clock.now = datetime(2026, 11, day, 12, 0, tzinfo=UTC)


def _event(email: str, kind: Kind, source: Source, **fields: Any) -> OptOutEvent:
    return OptOutEvent(email=email, kind=kind, source=source, **fields)


def seed_rates_history(hub: Hub, clock: Clock) -> None:
    """Recipients: newsletter a, b, c, d (campaign autumn); offers e (campaign autumn).

    In the range: a leaves the newsletter (one-click); b complains (autumn); z, who never got
    the newsletter, leaves it anyway (preference centre, "too_many"); c leaves everything with
    her own words (autumn); three addresses are imported; an admin opts g out by API; h
    unsubscribes at Mailchimp from campaign ghost, which no token was ever issued for; k
    bounces; a comes back to the newsletter. Before the range, d left the newsletter.
    """
    _at(clock, 1)
    for who in "abcd":
        issue_token(hub, f"{who}@example.com", topic="newsletter", campaign="autumn")
    issue_token(hub, "e@example.com", topic="offers", campaign="autumn")
    _at(clock, 10)
    hub.record([_event("d@example.com", Kind.UNSUBSCRIBE, Source.ONECLICK, scope=NEWSLETTER, campaign="autumn")])
    _at(clock, 21)
    hub.record([_event("a@example.com", Kind.UNSUBSCRIBE, Source.ONECLICK, scope=NEWSLETTER, campaign="autumn")])
    _at(clock, 22)
    hub.record(
        [_event("b@example.com", Kind.COMPLAINT, Source.SMTP, campaign="autumn", reason="complaint: ARF abuse report")]
    )
    hub.record([_event("z@example.com", Kind.UNSUBSCRIBE, Source.PREFERENCES, scope=NEWSLETTER, reason="too_many")])
    _at(clock, 23)
    hub.record(
        [
            _event(
                "c@example.com", Kind.UNSUBSCRIBE, Source.PREFERENCES, campaign="autumn", reason="other: I moved abroad"
            )
        ]
    )
    hub.record(
        [_event(f"i{n}@example.com", Kind.UNSUBSCRIBE, Source.IMPORT, provider_event_id=f"i{n}") for n in range(3)]
    )
    _at(clock, 24)
    hub.record(
        [_event("g@example.com", Kind.UNSUBSCRIBE, Source.API, reason="asked by phone", metadata={"admin": "Dana Ops"})]
    )
    hub.record([_event("h@example.com", Kind.UNSUBSCRIBE, Source.MAILCHIMP, campaign="ghost", reason="manual")])
    hub.record([_event("k@example.com", Kind.BOUNCE, Source.SMTP, reason="bounce: 5.1.1 user unknown (hard)")])
    hub.record(
        [
            _event(
                "a@example.com",
                Kind.RESUBSCRIBE,
                Source.PREFERENCES,
                scope=NEWSLETTER,
                verification=Verification.TOKEN,
            )
        ]
    )

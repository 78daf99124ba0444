"""The consent model through the real routes: event order, global and topic states kept
apart (README "Consent")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import select

from adapters.config import Config
from adapters.consent import MAX_CLOCK_SKEW, effective_time
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.compaction import pushes_of
from adapters.store.models import ConsentConflict, Event, OutboxRow
from adapters.store.queries import address_state
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from tests.support.pages import TOPICS, form_field, issue_token
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.security import CSRF_FIELD

MC_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
MC_ENV = {"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": MC_SECRET}


def serve(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Callable[[Any], LiveServer]
) -> tuple[Hub, str]:
    config = make_config(
        {
            "providers": {"mailchimp": {"enabled": True, "lists": ["abc123"], "base_url": "http://127.0.0.1:9"}},
            "topics": TOPICS,
        },
        env=MC_ENV,
    )
    hub = make_hub(config)
    return hub, serve_app(create_app(hub=hub)).url


def mailchimp_unsubscribe(url: str, email: str, fired_at: str) -> None:
    body = urlencode(
        {"type": "unsubscribe", "fired_at": fired_at, "data[email]": email, "data[list_id]": "abc123"}
    ).encode()
    r = requests.post(
        f"{url}/webhooks/mailchimp/{MC_SECRET}",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def resubscribe_in_centre(hub: Hub, url: str, email: str) -> requests.Response:
    page = f"{url}/preferences/{issue_token(hub, email)}"
    csrf = form_field(requests.get(page, timeout=10).text, CSRF_FIELD)
    return requests.post(page, data={"action": "resubscribe", CSRF_FIELD: csrf}, timeout=10)


def test_effective_time_is_occurrence_clamped_to_receipt_plus_skew() -> None:
    received = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert effective_time(received - timedelta(days=3), received) == received - timedelta(days=3)
    assert effective_time(received + timedelta(minutes=1), received) == received + timedelta(minutes=1)
    assert effective_time(received + timedelta(days=365), received) == received + MAX_CLOCK_SKEW


def test_a_provider_event_dated_a_year_ahead_does_not_freeze_the_state(
    make_config, make_hub, serve_app, clock: Clock
) -> None:
    """Issue 14, case 6: a signed opt-out dated a year ahead, then a real resubscribe today."""
    hub, url = serve(make_config, make_hub, serve_app)
    mailchimp_unsubscribe(url, "ann@example.com", "2027-11-24 12:00:00")
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"]
    clock.advance(MAX_CLOCK_SKEW.total_seconds() + 1)
    r = resubscribe_in_centre(hub, url, "ann@example.com")
    assert r.status_code == 200 and "Welcome back" in r.text
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"] is False


def drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0).drain()


def preferences(hub: Hub, url: str, email: str, action: str) -> None:
    page = f"{url}/preferences/{issue_token(hub, email)}"
    csrf = form_field(requests.get(page, timeout=10).text, CSRF_FIELD)
    assert requests.post(page, data={"action": action, CSRF_FIELD: csrf}, timeout=10).status_code == 200


def test_a_topic_opt_out_under_a_global_one_is_pushed_and_outlives_its_lifting(
    make_push_config, make_hub, serve_app, fake_providers: FakeProviders, clock: Clock
) -> None:
    """Issue 14, case 2: global opt-out, then the topic's one-click link, then the person
    resubscribes to everything: the topic stays opted out in the hub and at every provider."""
    hub = make_hub(make_push_config(fake_providers))
    url = serve_app(create_app(hub=hub)).url
    email = "ann@example.com"
    preferences(hub, url, email, "unsubscribe_all")
    drain(hub)
    clock.advance(60)
    r = requests.post(
        f"{url}/u/{issue_token(hub, email, topic='newsletter')}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200
    drain(hub)
    assert fake_providers.sendgrid.group_suppressions == {1234: {email}}
    assert fake_providers.hubspot.unsubscribed == {"5678": {email}}
    clock.advance(60)
    preferences(hub, url, email, "resubscribe")
    drain(hub)
    with hub.sessions() as session:
        assert address_state(session, email)["scopes"] == ["topic:newsletter"]
        pushed = session.execute(
            select(OutboxRow.provider, OutboxRow.action, OutboxRow.scope).order_by(OutboxRow.id)
        ).all()
    assert pushed[-6:] == [
        ("mailchimp", "resubscribe", "global"),
        ("sendgrid", "resubscribe", "global"),
        ("hubspot", "resubscribe", "global"),
        ("mailchimp", "unsubscribe", "topic:newsletter"),
        ("sendgrid", "unsubscribe", "topic:newsletter"),
        ("hubspot", "unsubscribe", "topic:newsletter"),
    ]
    assert fake_providers.sendgrid.global_suppressions == set()
    assert fake_providers.sendgrid.group_suppressions == {1234: {email}}
    assert fake_providers.mailchimp.members == {"list1": {email: "unsubscribed"}, "list2": {email: "pending"}}
    assert fake_providers.hubspot.unsubscribed == {"5678": {email}}


def test_a_topic_resubscribed_under_a_global_opt_out_is_pushed_when_the_global_is_lifted(
    make_push_config, make_hub, clock: Clock
) -> None:
    hub = make_hub(make_push_config(None, providers=("sendgrid",)))
    email, news = "bo@example.com", "topic:newsletter"

    def event(kind: Kind, scope: str) -> OptOutEvent:
        clock.advance(60)
        return OptOutEvent(email, kind, Source.PREFERENCES, scope, Verification.TOKEN, occurred_at=clock())

    hub.record([event(Kind.UNSUBSCRIBE, news), event(Kind.UNSUBSCRIBE, GLOBAL_SCOPE)])
    hub.record([event(Kind.RESUBSCRIBE, news)])  # the global opt-out still holds: nothing to push
    hub.record([event(Kind.RESUBSCRIBE, GLOBAL_SCOPE)])
    with hub.sessions() as session:
        pushed = session.execute(select(OutboxRow.action, OutboxRow.scope).order_by(OutboxRow.id)).all()
    assert pushed == [
        ("unsubscribe", news),
        ("unsubscribe", GLOBAL_SCOPE),
        ("resubscribe", GLOBAL_SCOPE),
        ("resubscribe", news),
    ]


def test_a_provider_left_out_of_provider_resubscribes_lifts_nothing(make_config, make_hub, clock: Clock) -> None:
    """The stricter setting: SendGrid's report of the person's own resubscribe is not trusted."""
    hub = make_hub(make_config({"consent": {"provider_resubscribes": ["mailchimp", "hubspot"]}}))
    email = "cy@example.com"

    def event(kind: Kind, **meta: str) -> OptOutEvent:
        clock.advance(60)
        return OptOutEvent(
            email, kind, Source.SENDGRID, verification=Verification.SIGNATURE, occurred_at=clock(), metadata=meta
        )

    hub.record([event(Kind.UNSUBSCRIBE)])
    hub.record([event(Kind.RESUBSCRIBE, actor="person")])
    with hub.sessions() as session:
        assert address_state(session, email)["suppressed"]
        assert session.scalar(select(ConsentConflict.opt_out_source)) == "sendgrid"


def test_a_retried_resubscribe_is_never_the_last_call_after_a_newer_opt_out(
    make_push_config, make_hub, serve_app, fake_providers: FakeProviders, clock: Clock
) -> None:
    """Issue 14, case 1: opt out, resubscribe (SendGrid's DELETE fails with 500 and is queued
    for a retry), opt out again with the one-click link: SendGrid ends suppressed, as the hub."""
    hub = make_hub(make_push_config(fake_providers, providers=("sendgrid",)))
    url = serve_app(create_app(hub=hub)).url
    email, sendgrid = "cy@example.com", fake_providers.sendgrid
    preferences(hub, url, email, "unsubscribe_all")
    drain(hub)
    clock.advance(60)
    sendgrid.fail_next(500)
    preferences(hub, url, email, "resubscribe")
    drain(hub)  # the DELETE failed: due again later
    assert sendgrid.global_suppressions == {email}
    clock.advance(60)
    r = requests.post(
        f"{url}/u/{issue_token(hub, email)}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200
    drain(hub)
    clock.advance(3600)  # the resubscribe's retry is due
    drain(hub)
    assert sendgrid.global_suppressions == {email}
    assert [(c.method, c.status) for c in sendgrid.calls] == [("POST", 201), ("DELETE", 500)] + [("POST", 201)] * (
        len(sendgrid.calls) - 2
    )  # no DELETE after the newer opt-out
    with hub.sessions() as session:
        assert address_state(session, email)["suppressed"]
        events = session.scalars(select(Event.id)).all()  # settled pushes may be compacted by now
        assert {p.state for pushes in pushes_of(session, events).values() for p in pushes} == {"done"}

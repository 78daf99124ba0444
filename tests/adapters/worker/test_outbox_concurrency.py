"""The worker's per-address pushes: sent concurrently within each provider's bound, held
back as a whole by a 429, and a global resubscribe that leaves opted-out topics' lists alone;
through the real worker and store against the fake provider servers (real HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import func, select

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.models import OutboxRow
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders

NEWS = topic_scope("newsletter")


def event(email: str, kind: Kind = Kind.UNSUBSCRIBE, scope: str = "global") -> OptOutEvent:
    """An opt-out by mail, or the person's own resubscribe on the preference centre."""
    if kind is Kind.RESUBSCRIBE:
        return OptOutEvent(email, kind, Source.PREFERENCES, scope, Verification.TOKEN)
    return OptOutEvent(email, kind, Source.SMTP, scope, Verification.DKIM)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def make_worker(http: requests.Session) -> Callable[[Hub], Worker]:
    return lambda hub: Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0)


def test_per_address_pushes_run_concurrently_within_each_providers_bound(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[[Hub], Worker],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    bound = 3
    config = make_push_config(
        fake_providers,
        options={slug: {"max_concurrent_requests": bound} for slug in ("mailchimp", "sendgrid", "hubspot")},
    )
    hub = make_hub(config)
    worker = make_worker(hub)
    for fake in fake_providers.all():
        fake.latency = 0.03  # long enough for calls to overlap
    people = [f"p{i}@example.com" for i in range(20)]
    hub.record([event(p, scope=NEWS) for p in people])
    worker.drain()  # HubSpot: one v3 unsubscribe per address
    assert fake_providers.hubspot.unsubscribed["5678"] == set(people)
    assert 1 < fake_providers.hubspot.max_in_flight <= bound
    clock.advance(1)
    hub.record([event(p, Kind.RESUBSCRIBE, scope=NEWS) for p in people])
    worker.drain()  # a Mailchimp member PATCH, a SendGrid group DELETE and a HubSpot subscribe each
    assert fake_providers.hubspot.unsubscribed["5678"] == set()
    assert fake_providers.sendgrid.group_suppressions[1234] == set()
    assert set(fake_providers.mailchimp.members["list1"].values()) == {"pending"}
    for fake in (fake_providers.mailchimp, fake_providers.sendgrid):
        assert 1 < fake.max_in_flight <= bound, fake.provider
    assert unsettled(hub) == 0


def unsettled(hub: Hub) -> int:
    with hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.state != "done")) or 0


def test_a_429_with_retry_after_holds_every_call_to_that_provider(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[[Hub], Worker],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    hub = make_hub(make_push_config(fake_providers, providers=("hubspot",)))
    worker = make_worker(hub)
    hubspot = fake_providers.hubspot
    people = [f"p{i}@example.com" for i in range(20)]
    hub.record([event(p, scope=NEWS) for p in people])
    hubspot.fail_next(429, retry_after="30", body={"status": "error", "message": "You have reached your limit."})
    worker.drain()
    sent = len(hubspot.calls)
    assert sent < len(people)  # the calls not yet started when the 429 came back were held
    clock.advance(1)
    hub.record([event("other@example.com")])  # a global opt-out: a batch call, due now
    tally = worker.drain()["hubspot"]
    assert tally.retried == 1 and len(hubspot.calls) == sent  # not sent: the provider is paused
    assert hubspot.unsubscribed_all == set()
    clock.advance(29)
    worker.drain()
    assert hubspot.unsubscribed_all == {"other@example.com"}
    assert hubspot.unsubscribed["5678"] == set(people)
    assert unsettled(hub) == 0


def test_a_global_resubscribe_asks_no_confirmation_for_a_topic_still_opted_out(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[[Hub], Worker],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    # lists = list1, list2; the topic "newsletter" is list1
    hub = make_hub(make_push_config(fake_providers, providers=("mailchimp",)))
    worker = make_worker(hub)
    mailchimp = fake_providers.mailchimp
    hub.record([event("g@example.com")])
    clock.advance(1)
    hub.record([event("g@example.com", scope=NEWS)])  # while the global opt-out holds
    worker.drain()
    assert {lst: m["g@example.com"] for lst, m in mailchimp.members.items()} == {
        "list1": "unsubscribed",
        "list2": "unsubscribed",
    }
    clock.advance(1)
    hub.record([event("g@example.com", Kind.RESUBSCRIBE)])
    worker.drain()
    patched = [c.path.split("/")[3] for c in mailchimp.calls_to("PATCH")]
    assert patched == ["list2"]  # Mailchimp asks the person to confirm list2 only
    assert {lst: m["g@example.com"] for lst, m in mailchimp.members.items()} == {
        "list1": "unsubscribed",
        "list2": "pending",
    }
    assert unsettled(hub) == 0

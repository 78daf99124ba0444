"""Constant Contact's pull (opt-outs made there, read back by polling) against the fake v3
API: the optout_after window, the full-scan fallback, pages and their checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import requests

from adapters.config import Config
from adapters.events import Kind, Source, Verification
from adapters.hub import Hub
from adapters.providers import constant_contact
from adapters.providers.pull import Puller
from tests.support import constant_contact as cc
from tests.support.clock import Clock
from tests.support.fake_providers import FakeConstantContact


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeConstantContact]:
    with cc.started(clock, per_second=None) as fake:
        yield fake


@pytest.fixture
def cc_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake: FakeConstantContact) -> Hub:
    config = make_config(
        {"providers": {"constant_contact": cc.cc_table(fake, requests_per_second=50.0)}}, env=cc.cc_env(fake)
    )
    return make_hub(config)


@pytest.fixture
def puller(cc_hub: Hub, clock: Clock) -> Iterator[constant_contact.ConstantContactPuller]:
    with requests.Session() as http:
        yield constant_contact.make_puller(cc_hub.config, http, now=clock, state=cc.state(cc_hub))


def test_it_is_a_puller(puller: constant_contact.ConstantContactPuller) -> None:
    checked: Puller = puller
    assert checked.slug == "constant_contact"


def test_opt_outs_since_a_time_come_from_the_optout_after_window(
    puller: constant_contact.ConstantContactPuller, fake: FakeConstantContact, clock: Clock, cc_hub: Hub
) -> None:
    fake.add_contact("keep@example.com")
    clock.advance(-3600)
    fake.unsubscribe_in_ui("old@example.com")
    clock.advance(3600)
    since = clock()
    clock.advance(60)
    contact_id = fake.unsubscribe_in_ui("Fresh@Example.com", reason="Too many mails")
    (page,) = list(puller.pull(since=since, checkpoint=None))
    (event,) = page.events
    assert (event.email, event.kind, event.source, event.verification) == (
        "Fresh@example.com",
        Kind.UNSUBSCRIBE,
        Source.CONSTANT_CONTACT,
        Verification.PULL,
    )
    assert event.occurred_at == clock() and event.reason == "Too many mails"
    assert event.metadata is not None and event.metadata["actor"] == "person"
    assert page.checkpoint is None and page.calls == 1
    (call,) = fake.calls_to("GET", "/v3/contacts")
    assert call.query["status"] == ["all"] and call.query["optout_after"] == [
        (since - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ]
    assert cc.state(cc_hub).contact_ids(["fresh@example.com"]) == {"fresh@example.com": contact_id}


def test_without_a_working_date_filter_it_falls_back_to_a_full_scan(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    with cc.started(clock, per_second=None, optout_filter_works=False) as fake:
        hub = make_hub(make_config({"providers": {"constant_contact": cc.cc_table(fake)}}, env=cc.cc_env(fake)))
        clock.advance(-3600)
        fake.unsubscribe_in_ui("old@example.com")
        clock.advance(3600)
        since = clock()
        fake.unsubscribe_in_ui("new@example.com")
        with requests.Session() as http:
            puller = constant_contact.make_puller(hub.config, http, now=clock, state=cc.state(hub))
            events = [e for page in puller.pull(since=since, checkpoint=None) for e in page.events]
        assert [e.email for e in events] == ["new@example.com"]  # older opt-outs are filtered here
        assert [c.query.get("status") for c in fake.calls_to("GET", "/v3/contacts")] == [["all"], ["unsubscribed"]]


def test_the_backfill_pages_through_every_unsubscribed_contact_and_resumes(
    puller: constant_contact.ConstantContactPuller, fake: FakeConstantContact
) -> None:
    for i in range(1203):
        fake.unsubscribe_in_ui(f"u{i}@example.com")
    for i in range(10):
        fake.add_contact(f"m{i}@example.com")
    pages = puller.pull(since=None, checkpoint=None)
    first = next(pages)
    assert len(first.events) == 500 and first.checkpoint is not None
    # a crash here: a new pull resumes from the checkpoint, never from the start
    rest = list(puller.pull(since=None, checkpoint=first.checkpoint))
    assert [len(p.events) for p in rest] == [500, 203] and rest[-1].checkpoint is None
    emails = {e.email for p in [first, *rest] for e in p.events}
    assert len(emails) == 1203
    assert [c.query.get("cursor") is not None for c in fake.calls_to("GET", "/v3/contacts")] == [False, True, True]


def test_a_contact_with_an_unreadable_date_holds_back_no_other(
    puller: constant_contact.ConstantContactPuller, fake: FakeConstantContact
) -> None:
    broken = fake.unsubscribe_in_ui("broken@example.com")
    fake.contacts[broken]["email_address"]["opt_out_date"] = "last Tuesday"
    fake.unsubscribe_in_ui("fine@example.com")
    (page,) = list(puller.pull(since=None, checkpoint=None))
    assert [e.email for e in page.events] == ["fine@example.com"]

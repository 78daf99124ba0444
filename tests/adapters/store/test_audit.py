"""The audit reads pushes wherever they are: an address's history and a period's export are
the same before and after the settled pushes are compacted (both databases, pushed by the
real worker to the fake providers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import select

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.audit import address_history, period_rows
from adapters.store.models import OutboxRow
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from tests.support.store import compact_everything

NEWS = topic_scope("newsletter")


def read(hub: Hub, email: str, clock: Clock) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with hub.sessions() as session:
        period = list(period_rows(session, clock.now - timedelta(days=1), clock.now + timedelta(seconds=1)))
        return address_history(session, email), period


def test_history_and_period_export_read_the_same_after_compaction(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    hub = make_hub(make_push_config(fake_providers))
    with requests.Session() as http:
        worker = Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0)
        hub.record([OptOutEvent("Pat@example.com", Kind.UNSUBSCRIBE, Source.API, NEWS, reason="asked")])
        clock.advance(10)
        hub.record([OptOutEvent("pat@example.com", Kind.UNSUBSCRIBE, Source.MAILCHIMP)])  # no echo to Mailchimp
        fake_providers.sendgrid.fail_next(503)
        worker.drain()
        clock.advance(60)
        worker.drain()  # SendGrid's retry: 2 attempts
        clock.advance(10)
        # The person lifts the global opt-out: pushed as a resubscribe, and the newsletter's
        # own opt-out queued again at the topic's scope (HubSpot cannot undo unsubscribe-all:
        # that push goes dead).
        lift = OptOutEvent("pat@example.com", Kind.RESUBSCRIBE, Source.PREFERENCES, "global", Verification.TOKEN)
        hub.record([lift])
        worker.drain()
    clock.advance(10)
    hub.record([OptOutEvent("other@example.com", Kind.COMPLAINT, Source.SENDGRID)])  # not pushed yet
    before = read(hub, "pat@example.com", clock)

    assert compact_everything(hub) == 10  # 3 + 2 + 5 settled; one dead and two pending stay
    with hub.sessions() as session:
        assert sorted(session.scalars(select(OutboxRow.state))) == ["dead", "pending", "pending"]
    assert read(hub, "pat@example.com", clock) == before

    history, period = before
    lifted = history["events"][2]["pushes"]
    assert [(p["provider"], p["action"], p["scope"], p["state"]) for p in lifted] == [
        ("mailchimp", "resubscribe", "global", "done"),
        ("sendgrid", "resubscribe", "global", "done"),
        ("hubspot", "resubscribe", "global", "dead"),
        ("mailchimp", "unsubscribe", NEWS, "done"),
        ("sendgrid", "unsubscribe", NEWS, "done"),
        ("hubspot", "unsubscribe", NEWS, "done"),
    ]
    assert [row["pushes"] for row in period[1:]] == [
        "sendgrid:done:2:2026-11-24T12:01:10+00:00;hubspot:done:1:2026-11-24T12:00:10+00:00",
        "mailchimp:done:1:2026-11-24T12:01:20+00:00;sendgrid:done:1:2026-11-24T12:01:20+00:00;hubspot:dead:1:;"
        "mailchimp:done:1:2026-11-24T12:01:20+00:00;sendgrid:done:1:2026-11-24T12:01:20+00:00;"
        "hubspot:done:1:2026-11-24T12:01:20+00:00",
        "mailchimp:pending:0:;hubspot:pending:0:",
    ]

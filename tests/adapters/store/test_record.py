"""Store semantics (README "How it fits together") on a real SQLite file and, in CI, real PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.store.models import DeliveryBlock, Event, OutboxRow, Suppression
from adapters.store.queries import check_addresses
from tests.support.store import ev, state

PROVIDER_ENV = {
    "SENDGRID_API_KEY": "k",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "p",
    "HUBSPOT_ACCESS_TOKEN": "t",
    "HUBSPOT_CLIENT_SECRET": "s",
    "MAILCHIMP_API_KEY": "m-us1",
    "MAILCHIMP_WEBHOOK_SECRET": "w",
}


def test_batch_is_recorded_once(hub: Hub) -> None:
    batch = [ev(f"user{i}@example.com", source=Source.SENDGRID, provider_event_id=f"sg-{i}") for i in range(50)]
    assert hub.record(batch).new == 50
    assert hub.record(batch).new == 0
    assert (
        hub.record([*batch[:10], ev("late@example.com", source=Source.SENDGRID, provider_event_id="sg-late")]).new == 1
    )
    # the same provider event twice inside one batch is stored once
    assert hub.record([ev("x@example.com", source=Source.SENDGRID, provider_event_id="dup")] * 3).new == 1
    # the same id from another source is another event
    assert hub.record([ev("user1@example.com", source=Source.MAILCHIMP, provider_event_id="sg-1")]).new == 1
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 53


def test_concurrent_retries_count_once(hub: Hub) -> None:
    batch = [ev(f"c{i}@example.com", source=Source.SENDGRID, provider_event_id=f"c-{i}") for i in range(200)]
    results: list[int] = []

    def deliver() -> None:
        results.append(hub.record(batch).new)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 200


def test_only_a_later_resubscribe_undoes_an_opt_out(hub: Hub, clock) -> None:
    t0 = clock()
    hub.record([ev("ann@example.com", occurred_at=t0)])
    assert state(hub, "ann@example.com")["suppressed"]
    # another opt-out or a complaint never undoes it
    hub.record([ev("ann@example.com", Kind.COMPLAINT, occurred_at=t0 + timedelta(seconds=1))])
    assert state(hub, "ann@example.com")["scopes"] == ["global"]
    # a resubscribe that happened before the opt-out does not undo it
    hub.record(
        [
            ev(
                "ann@example.com",
                Kind.RESUBSCRIBE,
                Source.PREFERENCES,
                occurred_at=t0 - timedelta(seconds=5),
                verification=Verification.TOKEN,
            )
        ]
    )
    assert state(hub, "ann@example.com")["suppressed"]
    # an explicit later resubscribe does
    hub.record(
        [
            ev(
                "ANN@example.com",
                Kind.RESUBSCRIBE,
                Source.PREFERENCES,
                occurred_at=t0 + timedelta(seconds=10),
                verification=Verification.TOKEN,
            )
        ]
    )
    s = state(hub, "ann@example.com")
    assert not s["suppressed"] and s["scopes"] == []
    assert [e["kind"] for e in s["events"]] == ["resubscribe", "unsubscribe", "complaint", "resubscribe"]
    # and a new opt-out after it suppresses again
    hub.record([ev("ann@example.com", occurred_at=t0 + timedelta(seconds=20))])
    assert state(hub, "ann@example.com")["suppressed"]


def test_global_opt_out_wins_over_topic_state(make_hub, make_config, clock) -> None:
    config = make_config({"topics": [{"name": "news"}, {"name": "offers"}]})
    hub = make_hub(config)
    t0 = clock()
    hub.record([ev("bo@example.com", scope=topic_scope("news"), occurred_at=t0)])
    with hub.sessions() as session:
        assert check_addresses(session, ["bo@example.com"], topic="news").suppressed == ["bo@example.com"]
        assert check_addresses(session, ["bo@example.com"], topic="offers").suppressed == []
        assert check_addresses(session, ["bo@example.com"]).suppressed == []
    hub.record([ev("bo@example.com", occurred_at=t0 + timedelta(seconds=1))])
    hub.record(
        [
            ev(
                "bo@example.com",
                Kind.RESUBSCRIBE,
                Source.PREFERENCES,
                scope=topic_scope("news"),
                occurred_at=t0 + timedelta(seconds=2),
                verification=Verification.TOKEN,
            )
        ]
    )
    with hub.sessions() as session:
        for topic in (None, "news", "offers"):
            assert check_addresses(session, ["bo@example.com"], topic=topic).suppressed == ["bo@example.com"]
    assert state(hub, "bo@example.com")["scopes"] == ["global"]


def test_bounces_suppress_only_when_configured(make_hub, make_config) -> None:
    off = make_hub(make_config())
    off.record([ev("b@example.com", Kind.BOUNCE, Source.SMTP)])
    assert not state(off, "b@example.com")["suppressed"]
    assert [e["kind"] for e in state(off, "b@example.com")["events"]] == ["bounce"]
    on = make_hub(make_config({"inbound": {"suppress_hard_bounces": True}}))
    on.record([ev("c@example.com", Kind.BOUNCE, Source.SMTP)])
    assert state(on, "c@example.com")["suppressed"]


def test_outbox_rows_follow_scope_and_never_echo(make_hub, make_config) -> None:
    config = make_config(
        {
            "providers": {
                "mailchimp": {"enabled": True, "lists": ["L1"]},
                "sendgrid": {"enabled": True},
                "hubspot": {"enabled": True},
            },
            "topics": [{"name": "news", "sendgrid_group": 7, "hubspot_subscription": "55"}, {"name": "bare"}],
        },
        env=PROVIDER_ENV,
    )
    hub = make_hub(config)
    hub.record([ev("g@example.com", source=Source.SENDGRID, provider_event_id="1")])
    hub.record([ev("t@example.com", source=Source.SMTP, scope=topic_scope("news"))])
    hub.record([ev("u@example.com", source=Source.ONECLICK, scope=topic_scope("bare"))])
    # an opt-out already in force queues nothing new (provider echoes)
    hub.record([ev("g@example.com", source=Source.HUBSPOT, provider_event_id="2")])
    with hub.sessions() as session:
        rows = sorted((r.email, r.provider, r.scope, r.action) for r in session.scalars(select(OutboxRow)))
    assert rows == [
        ("g@example.com", "hubspot", GLOBAL_SCOPE, "unsubscribe"),
        ("g@example.com", "mailchimp", GLOBAL_SCOPE, "unsubscribe"),
        ("t@example.com", "hubspot", "topic:news", "unsubscribe"),
        ("t@example.com", "sendgrid", "topic:news", "unsubscribe"),
    ]


def test_returned_event_ids_are_the_stored_rows(hub: Hub) -> None:
    first = hub.record([ev(f"id{i}@example.com", source=Source.SENDGRID, provider_event_id=f"i{i}") for i in range(5)])
    # a batch where some conflict and some are new
    second = hub.record(
        [ev(f"id{i}@example.com", source=Source.SENDGRID, provider_event_id=f"i{i}") for i in range(3, 8)]
    )
    assert second.new == 3
    with hub.sessions() as session:
        stored = {e.id: e.provider_event_id for e in session.scalars(select(Event))}
    assert [stored[i] for i in first.event_ids] == ["i0", "i1", "i2", "i3", "i4"]
    assert [stored[i] for i in second.event_ids] == ["i5", "i6", "i7"]
    with hub.sessions() as session:
        suppression_events = set(session.scalars(select(Suppression.event_id)))
    assert suppression_events == set(first.event_ids) | set(second.event_ids)


def test_event_counts_follow_every_new_event_and_only_new_ones(hub: Hub, clock) -> None:
    from adapters.store.models import EventCount
    from tests.support.event_counts import expected_counts

    day1 = clock.now
    day2 = day1 + timedelta(days=1)
    batch = [
        OptOutEvent(
            email=f"p{i}@example.com",
            kind=Kind.UNSUBSCRIBE if i % 3 else Kind.COMPLAINT,
            source=Source.SENDGRID,
            provider_event_id=f"sg{i}",
            received_at=day1 if i < 5 else day2,
            reason=None if i % 2 else "x" * 300,
        )
        for i in range(10)
    ]
    hub.record(batch)
    hub.record(batch[:4])  # the provider retried: nothing new to count
    hub.record([OptOutEvent(email="q@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, reason="phone call")])
    with hub.sessions() as session:
        counts = Counter({(c.day, c.source, c.kind, c.reason): c.n for c in session.scalars(select(EventCount))})
        assert counts == expected_counts(session)
    assert sum(counts.values()) == 11


def test_delivery_blocks_span_the_earliest_and_latest_complaint_or_bounce(hub: Hub, clock) -> None:
    t0 = clock()
    hub.record(
        [ev("kim@example.com", Kind.COMPLAINT, occurred_at=t0), ev("kim@example.com", Kind.BOUNCE, occurred_at=t0)]
    )
    # a later batch whose events reach both sides of the stored span, out of order
    hub.record(
        [
            ev("kim@example.com", Kind.COMPLAINT, occurred_at=t0 + timedelta(seconds=30), provider_event_id="c2"),
            ev("kim@example.com", Kind.COMPLAINT, occurred_at=t0 - timedelta(seconds=20), provider_event_id="c3"),
            ev("kim@example.com", Kind.BOUNCE, occurred_at=t0 + timedelta(seconds=5), provider_event_id="b2"),
        ]
    )
    hub.record([ev("kim@example.com", Kind.BOUNCE, occurred_at=t0 - timedelta(seconds=1), provider_event_id="b3")])
    with hub.sessions() as session:
        spans = {b.kind: (b.first_at, b.last_at) for b in session.scalars(select(DeliveryBlock))}
    assert spans == {
        "complaint": (t0 - timedelta(seconds=20), t0 + timedelta(seconds=30)),
        "bounce": (t0 - timedelta(seconds=1), t0 + timedelta(seconds=5)),
    }

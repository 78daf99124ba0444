"""The change feed in the store: changes numbered in commit order, read by cursor."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import pytest
from sqlalchemy import select

from adapters.config import parse_config
from adapters.errors import PayloadError
from adapters.events import Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.store.changes import SubscriberFilter, decode_cursor, encode_cursor, read_changes
from adapters.store.models import Change, Event, WebhookDelivery
from adapters.store.record import record_events
from tests.support.writers import record_holding, record_one_by_one


def test_cursors_round_trip_and_nothing_else_decodes() -> None:
    for seq in (0, 1, 2**62):
        assert decode_cursor(encode_cursor(seq)) == seq
    for bad in ("", "1", "Yy4x", "YzEu", "YzEuLTE", "YzEuMS4y", "Ã©"):
        with pytest.raises(PayloadError):
            decode_cursor(bad)


def test_a_change_and_its_deliveries_commit_or_roll_back_with_the_event(hub: Hub, clock) -> None:
    policy = dataclasses.replace(
        hub.policy,
        subscribers=(
            SubscriberFilter("https://a.example/h"),
            SubscriberFilter("https://b.example/h", frozenset({"complaint"})),
        ),
    )
    with pytest.raises(RuntimeError), hub.sessions.begin() as session:
        record_events(session, [OptOutEvent("ann@example.com", Kind.UNSUBSCRIBE, Source.API)], policy, now=clock())
        raise RuntimeError("the request failed after recording")
    with hub.sessions() as session:
        assert session.scalars(select(Change)).all() == []
        assert session.scalars(select(WebhookDelivery)).all() == []
    with hub.sessions.begin() as session:
        events = [
            OptOutEvent("ann@example.com", Kind.UNSUBSCRIBE, Source.API),
            OptOutEvent("bob@example.com", Kind.COMPLAINT, Source.SMTP),
            OptOutEvent("bob@example.com", Kind.UNSUBSCRIBE, Source.API),  # already opted out: no change
        ]
        record_events(session, events, policy, now=clock())
    with hub.sessions() as session:
        page = read_changes(session, 0, 10)
        assert [(c.seq, c.email, c.kind) for c in page.changes] == [
            (1, "ann@example.com", "unsubscribe"),
            (2, "bob@example.com", "complaint"),
        ]
        deliveries = session.execute(
            select(WebhookDelivery.subscriber, Event.email)
            .join_from(WebhookDelivery, Change)
            .join(Event, Event.id == Change.event_id)
            .order_by(WebhookDelivery.id)
        ).all()
        assert sorted(deliveries) == [
            ("https://a.example/h", "ann@example.com"),
            ("https://a.example/h", "bob@example.com"),
            ("https://b.example/h", "bob@example.com"),
        ]


def test_a_reader_skips_nothing_while_two_processes_write(make_hub, postgresql_url, test_env) -> None:
    """One process writes changes fast, the other holds each transaction open 0.15 s after its
    change is written (a slow request: a reader that went by ids and moved past the largest it
    had seen would skip what such a transaction commits late), while this process reads the
    feed a few changes at a time: every change is read exactly once, in order, and the two
    writers' changes interleave."""
    config = parse_config({"security": {"token_secret_env": "OPTOUT_HUB_SECRET"}}, test_env)
    hub: Hub = make_hub(dataclasses.replace(config, database=dataclasses.replace(config.database, url=postgresql_url)))
    fast = [OptOutEvent(f"fast{i}@example.com", Kind.UNSUBSCRIBE, Source.API) for i in range(300)]
    slow = [
        OptOutEvent(f"slow{i}@example.com", Kind.COMPLAINT, Source.SMTP, verification=Verification.NONE)
        for i in range(15)
    ]
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(1)
    writers = [
        ctx.Process(target=record_one_by_one, args=(postgresql_url, fast, go)),
        ctx.Process(target=record_holding, args=(postgresql_url, slow, 0.15)),
    ]
    for w in writers:
        w.start()
    seen: list[Change] = []
    cursor = 0
    deadline = time.monotonic() + 120
    while any(w.is_alive() for w in writers) and time.monotonic() < deadline:
        with hub.sessions() as session:
            page = read_changes(session, cursor, 7)
        seen.extend(page.changes)
        cursor = page.next
    for w in writers:
        w.join(timeout=60)
        assert w.exitcode == 0
    while True:
        with hub.sessions() as session:
            page = read_changes(session, cursor, 7)
        if not page.changes:
            break
        seen.extend(page.changes)
        cursor = page.next
    seqs = [c.seq for c in seen]
    assert seqs == sorted(set(seqs)) == list(range(1, 316))
    with hub.sessions() as session:
        stored = set(session.scalars(select(Event.id)))
    assert {c.event_id for c in seen} == stored and len(stored) == 315
    order = "".join("s" if c.email.startswith("slow") else "f" for c in seen)
    assert order.count("fs") + order.count("sf") >= 10, order  # the writers really ran together

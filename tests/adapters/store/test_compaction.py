"""Outbox compaction: settled rows leave the outbox in bounded batches through the worker, and
every fact the audit reports per event and provider survives (both databases, real HTTP to the
fake providers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.compaction import pushes_of
from adapters.store.models import OutboxRow, PushConfirmation
from adapters.store.outbox import retry_row
from adapters.worker.outbox import COMPACT_EVERY, Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from webhooks.admin.actions import recent_actions
from webhooks.admin.dashboard import push_latencies

AUDITED = ("provider", "action", "scope", "state", "attempts", "created_at", "done_at", "last_status", "last_error")


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def facts(hub: Hub, event_ids: list[int]) -> dict[int, list[tuple[Any, ...]]]:
    """What the audit reports of each event's pushes."""
    with hub.sessions() as session:
        found = pushes_of(session, event_ids)
    return {event: [tuple(getattr(row, name) for name in AUDITED) for row in rows] for event, rows in found.items()}


def count(hub: Hub, model: type[Any]) -> int:
    with hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_settled_rows_move_out_in_batches_and_keep_the_audits_facts(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    http: requests.Session,
    clock: Clock,
) -> None:
    config = make_push_config(
        fake_providers, worker={"compact": True, "compact_after_seconds": 600.0, "compact_batch": 4}
    )
    hub = make_hub(config)
    result = hub.record(
        [
            OptOutEvent(email=f"p{i}@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, reason="asked")
            for i in range(3)
        ]
        + [OptOutEvent(email="mc@example.com", kind=Kind.UNSUBSCRIBE, source=Source.MAILCHIMP)]
    )
    ids = list(result.event_ids)
    fake_providers.hubspot.fail_next(503)  # one retry before it goes through: attempts kept
    worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http, rng=lambda: 1.0)
    worker.drain()
    clock.advance(60)
    worker.drain()
    with hub.sessions.begin() as session:  # one row dead: unsettled work, never compacted
        dead = session.scalar(select(OutboxRow.id).where(OutboxRow.provider == "sendgrid").limit(1))
        session.execute(update(OutboxRow).where(OutboxRow.id == dead).values(state="dead", last_status=400))
    before = facts(hub, ids)
    assert sum(len(rows) for rows in before.values()) == 11  # 3 x 3 providers + 2 (no echo to mailchimp)
    attempts = AUDITED.index("attempts")
    assert {row[attempts] for rows in before.values() for row in rows if row[0] == "hubspot"} == {2}

    clock.advance(530)  # the first rows settled 590 s ago, the retried ones 530 s ago
    assert worker.compact() == 0  # settled less than compact_after_seconds ago
    clock.advance(30)
    assert worker.compact() == 0  # some are old enough now, but it checked less than a minute ago
    clock.advance(COMPACT_EVERY.total_seconds() + 40)
    assert [worker.compact(), worker.compact(), worker.compact()] == [4, 4, 2]  # a backlog goes on at once
    assert worker.compact() == 0
    assert (count(hub, OutboxRow), count(hub, PushConfirmation)) == (1, 10)
    assert facts(hub, ids) == before
    with hub.sessions() as session:
        latencies = {lat.provider: lat.pushes for lat in push_latencies(session, since=clock.now.replace(year=2000))}
    assert latencies == {"mailchimp": 3, "sendgrid": 3, "hubspot": 4}


def test_a_new_worker_compacts_at_its_first_upkeep(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    http: requests.Session,
) -> None:
    config = make_push_config(fake_providers, worker={"compact": True, "compact_after_seconds": 0.0})
    hub = make_hub(config)
    hub.record([OptOutEvent(email="a@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)])
    Worker(hub, make_clients(config, http, now=hub.clock), http=http).drain()
    assert count(hub, OutboxRow) == 3
    Worker(hub, make_clients(config, http, now=hub.clock), http=http).drain()  # `optout-hub sync` again
    assert (count(hub, OutboxRow), count(hub, PushConfirmation)) == (0, 3)


def test_a_push_an_admin_retried_stays_in_the_outbox_with_who_retried_it(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    http: requests.Session,
    clock: Clock,
) -> None:
    config = make_push_config(fake_providers, providers=("sendgrid",), worker={"compact": True})
    hub = make_hub(config)
    hub.record([OptOutEvent(email=f"{name}@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API) for name in "ab"])
    fake_providers.sendgrid.fail_next(400)  # one batch call for both: refused for good
    worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http)
    worker.drain()
    with hub.sessions.begin() as session:
        a, b = session.scalars(select(OutboxRow.id).where(OutboxRow.state == "dead").order_by(OutboxRow.id))
        assert retry_row(session, a, now=clock.now, admin="alice")
        session.execute(update(OutboxRow).where(OutboxRow.id == b).values(state="pending", due_at=clock.now))
    worker.drain()  # both done: a retried by alice, b put back another way
    clock.advance(config.worker.compact_after_seconds + 1)
    assert worker.compact() == 1
    with hub.sessions() as session:
        assert session.scalars(select(OutboxRow.id)).all() == [a]
        assert [(x.admin, x.action, x.detail) for x in recent_actions(session)] == [
            ("alice", "retried", f"outbox #{a} sendgrid")
        ]


def test_pushes_queued_after_the_outbox_was_emptied_take_new_ids(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    http: requests.Session,
) -> None:
    config = make_push_config(fake_providers, providers=("sendgrid",), worker={"compact_after_seconds": 0.0})
    hub = make_hub(config)
    worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http)
    ids = []
    for name in ("first", "second"):
        ids += hub.record(
            [OptOutEvent(email=f"{name}@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)]
        ).event_ids
        worker.drain()
        worker.next_compaction = None  # at once, not a minute later
        assert worker.compact() == 1 and count(hub, OutboxRow) == 0
    with hub.sessions() as session:
        moved = pushes_of(session, ids)
    assert moved[ids[0]][0].id < moved[ids[1]][0].id  # queued later, a larger id, on SQLite too

"""Outbound webhooks: each consent change POSTed, signed as Standard Webhooks do, to a real
local subscriber that verifies the signature from the spec; retried like provider pushes,
dead on an answer no retry can fix, visible and retried from /admin over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import WebhookDelivery
from adapters.worker.outbox import Worker
from tests.support.subscriber import Subscriber, new_secret


@pytest.fixture
def subscriber(clock) -> Iterator[Subscriber]:
    server = Subscriber(new_secret(), clock)
    yield server
    server.stop()


def _hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], sub: Subscriber, **table: Any) -> Hub:
    config = make_config(
        {
            "security": {"token_secret_env": "OPTOUT_HUB_SECRET", "admin_token_env": "OPTOUT_HUB_ADMIN_TOKEN"},
            "worker": {"backoff_base_seconds": 30, "backoff_max_seconds": 600},
            "subscribers": [{"url": sub.url, "secret_env": "HOOK", **table}],
        },
        env={"HOOK": sub.secret},
    )
    return make_hub(config)


def _deliveries(hub: Hub) -> list[WebhookDelivery]:
    with hub.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_change_is_delivered_signed_retried_after_500_then_accepted(make_config, make_hub, subscriber, clock) -> None:
    hub = _hub(make_config, make_hub, subscriber)
    worker = Worker(hub, {}, http=requests.Session(), rng=lambda: 1.0)
    hub.record([OptOutEvent("Ann@Example.com", Kind.UNSUBSCRIBE, Source.API, reason="by phone")])
    subscriber.answers = [500]
    worker.upkeep()
    (first,) = subscriber.received
    assert first.verified and first.status == 500
    (row,) = _deliveries(hub)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
    assert (row.next_attempt_at - clock()).total_seconds() == 30  # the worker's back-off, full jitter
    worker.upkeep()
    assert len(subscriber.received) == 1  # not due yet
    clock.advance(31)
    worker.upkeep()
    second = subscriber.received[1]
    assert second.verified and second.status == 204
    assert second.headers["webhook-id"] == first.headers["webhook-id"]  # one message, two attempts
    assert second.body == first.body
    assert int(second.headers["webhook-timestamp"]) == int(clock().timestamp())  # of the attempt
    (row,) = _deliveries(hub)
    assert (row.state, row.attempts, row.last_status, row.done_at) == ("done", 2, 204, clock())
    document = second.document
    assert document["type"] == "consent.changed"
    data = document["data"]
    assert (data["email"], data["scope"], data["state"], data["kind"], data["source"], data["actor"]) == (
        "Ann@Example.com",
        "global",
        "opted_out",
        "unsubscribe",
        "api",
        "staff",
    )
    with hub.sessions() as session:
        from adapters.store.changes import read_changes

        (change,) = read_changes(session, 0, 10).changes
    assert data["event_id"] == change.event_id and data["cursor"]
    worker.upkeep()
    assert len(subscriber.received) == 2  # delivered once
    counted = hub.metrics.registry.get_sample_value
    assert counted("optout_subscriber_deliveries_total", {"result": "retry"}) == 1
    assert counted("optout_subscriber_deliveries_total", {"result": "done"}) == 1


def test_429_waits_for_retry_after_and_a_timeout_is_retried(make_config, make_hub, subscriber, clock) -> None:
    hub = _hub(make_config, make_hub, subscriber, timeout_seconds=0.5)
    worker = Worker(hub, {}, http=requests.Session(), rng=lambda: 0.0)
    hub.record([OptOutEvent("bob@example.com", Kind.COMPLAINT, Source.SMTP)])
    subscriber.answers = [429]
    worker.upkeep()
    (row,) = _deliveries(hub)
    assert (row.state, row.last_status) == ("pending", 429)
    assert (row.next_attempt_at - clock()).total_seconds() == 120  # Retry-After, above the back-off
    clock.advance(121)
    subscriber.delay = 2.0  # slower than the subscriber's timeout_seconds
    worker.upkeep()
    (row,) = _deliveries(hub)
    assert (row.state, row.attempts, row.last_error) == ("pending", 2, "timed out")
    subscriber.delay = 0.0
    clock.advance(600)
    worker.upkeep()
    (row,) = _deliveries(hub)
    assert (row.state, row.attempts) == ("done", 3)


def test_only_the_kinds_a_subscriber_asked_for(make_config, make_hub, subscriber) -> None:
    hub = _hub(make_config, make_hub, subscriber, events=["complaint"])
    worker = Worker(hub, {}, http=requests.Session())
    hub.record(
        [
            OptOutEvent("ann@example.com", Kind.UNSUBSCRIBE, Source.API),
            OptOutEvent("bob@example.com", Kind.COMPLAINT, Source.SMTP),
        ]
    )
    worker.upkeep()
    assert [r.document["data"]["email"] for r in subscriber.received] == ["bob@example.com"]


def test_a_400_goes_dead_shown_on_admin_and_retried_from_there(
    make_config, make_hub, subscriber, serve_app, admin_headers, clock
) -> None:
    from webhooks import create_app

    hub = _hub(make_config, make_hub, subscriber)
    url = serve_app(create_app(hub=hub)).url
    worker = Worker(hub, {}, http=requests.Session())
    hub.record([OptOutEvent("carl@example.com", Kind.UNSUBSCRIBE, Source.API)])
    subscriber.answers = [400]
    worker.upkeep()
    (row,) = _deliveries(hub)
    assert (row.state, row.last_status) == ("dead", 400)
    clock.advance(3600)
    worker.upkeep()
    assert len(subscriber.received) == 1  # dead: never tried again by itself
    page = requests.get(f"{url}/admin", headers=admin_headers, timeout=10)
    assert page.status_code == 200
    assert f'id="delivery-{row.id}"' in page.text and "carl@example.com" in page.text and subscriber.url in page.text
    r = requests.post(
        f"{url}/admin/subscribers/{row.id}/retry", headers=admin_headers, allow_redirects=False, timeout=10
    )
    assert r.status_code == 303
    again = requests.post(f"{url}/admin/subscribers/{row.id}/retry", headers=admin_headers, timeout=10)
    assert again.status_code == 400  # no longer dead
    worker.upkeep()
    (row,) = _deliveries(hub)
    assert (row.state, row.attempts) == ("done", 1)
    assert [r.status for r in subscriber.received] == [400, 204]
    assert f'id="delivery-{row.id}"' not in requests.get(f"{url}/admin", headers=admin_headers, timeout=10).text


def test_a_receiver_that_times_out_costs_one_time_out_per_run(make_config, make_hub, subscriber, clock) -> None:
    hub = _hub(make_config, make_hub, subscriber, timeout_seconds=0.5)
    worker = Worker(hub, {}, http=requests.Session(), rng=lambda: 1.0)
    hub.record([OptOutEvent(f"p{i}@example.com", Kind.UNSUBSCRIBE, Source.API) for i in range(150)])
    subscriber.delay = 2.0
    started = time.monotonic()
    worker.upkeep()
    assert time.monotonic() - started < 5
    assert len(subscriber.received) == 1
    rows = _deliveries(hub)
    assert {(r.state, r.last_error, r.next_attempt_at) for r in rows} == {
        ("pending", "timed out", clock() + timedelta(seconds=30))
    }
    subscriber.delay = 0.0
    clock.advance(31)
    worker.upkeep()
    assert {r.state for r in _deliveries(hub)} == {"done"}
    assert len({r.headers["webhook-id"] for r in subscriber.received}) == 150

"""The operator endpoints over real HTTP: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy import select

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import OutboxRow
from tests.support.clock import Clock
from tests.support.servers import LiveServer
from webhooks import create_app


def test_healthz_and_metrics(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    assert requests.get(f"{live_app.url}/healthz", timeout=5).json() == {"status": "ok", "database": "ok"}
    requests.post(
        f"{live_app.url}/api/v1/suppressions",
        json={"email": "m@example.com", "reason": "phone"},
        headers=admin_headers,
        timeout=5,
    )
    text = requests.get(f"{live_app.url}/metrics", timeout=5).text
    assert 'optout_events_total{kind="unsubscribe",source="api"} 1.0' in text
    for name in (
        "optout_smtp_messages_total",
        "optout_webhook_requests_total",
        "optout_push_total",
        "optout_push_latency_seconds",
        "optout_outbox_pending",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_healthz_reports_a_dead_database(make_config, make_hub, serve_app) -> None:
    from adapters.store import database
    from webhooks import create_app

    hub = make_hub(make_config())
    server = serve_app(create_app(hub=hub))
    hub.engine.dispose()
    hub.engine = database.make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/gone?connect_timeout=2"
    )  # nothing listens there
    r = requests.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 503 and r.json() == {"error": "database unavailable"}


def test_dead_rows_and_the_oldest_pending_push_per_provider(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
    clock: Clock,
) -> None:
    hub = make_hub(
        make_config(
            {"providers": {"mailchimp": {"enabled": True, "lists": ["abc123"]}}},
            env={"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": "s" * 20},
        )
    )
    server = serve_app(create_app(hub=hub))
    hub.record([OptOutEvent(f"p{i}@example.com", Kind.UNSUBSCRIBE, Source.API) for i in range(3)])
    with hub.sessions.begin() as session:
        first = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).first()
        assert first is not None
        first.state = "dead"
    clock.advance(90)
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'optout_outbox_dead{provider="mailchimp"} 1.0' in text
    assert 'optout_outbox_pending{provider="mailchimp"} 2.0' in text
    assert 'optout_outbox_oldest_pending_seconds{provider="mailchimp"} 90.0' in text

"""The operator endpoints over real HTTP: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import requests

from tests.support.servers import LiveServer


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

"""The change feed, ``GET /api/v1/changes``, over real HTTP (README "Change feed and outbound
webhooks")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from adapters.config import Config
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source
from adapters.hub import Hub
from tests.support.servers import LiveServer

FEED_TOKEN = "feed-token-0123456789abcdef"


def _feed_app(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Any) -> tuple[Hub, str]:
    from webhooks import create_app

    config = make_config(
        {
            "security": {"token_secret_env": "OPTOUT_HUB_SECRET", "feed_token_env": "FEED"},
            "topics": [{"name": "news"}],
        },
        env={"FEED": FEED_TOKEN},
    )
    hub = make_hub(config)
    return hub, serve_app(create_app(hub=hub)).url


def _post(url: str, headers: dict[str, str], **body: str) -> None:
    r = requests.post(f"{url}/api/v1/suppressions", json={"reason": "by phone", **body}, headers=headers, timeout=5)
    assert r.status_code == 201, r.text


def _read(url: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = requests.get(f"{url}/api/v1/changes", params=params, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_change_in_order_page_by_page(make_config, make_hub, serve_app, admin_headers, clock) -> None:
    hub, url = _feed_app(make_config, make_hub, serve_app)
    _post(url, admin_headers, email="Ann@Example.com")
    _post(url, admin_headers, email="bob@example.com", topic="news", kind="complaint")
    _post(url, admin_headers, email="ann@example.com")  # already opted out: no change
    clock.advance(60)
    _post(url, admin_headers, email="ann@example.com", kind="resubscribe", admin="Zoe")
    _post(url, admin_headers, email="carl@example.com", kind="resubscribe")  # nothing to lift: no change

    first = _read(url, admin_headers, limit=2)
    assert [(c["email"], c["scope"], c["state"], c["kind"]) for c in first["changes"]] == [
        ("Ann@example.com", GLOBAL_SCOPE, "opted_out", "unsubscribe"),
        ("bob@example.com", "topic:news", "opted_out", "complaint"),
    ]
    assert first["next"] == first["changes"][-1]["cursor"]
    second = _read(url, admin_headers, after=first["next"], limit=2)
    assert [(c["email"], c["state"], c["kind"], c["actor"]) for c in second["changes"]] == [
        ("ann@example.com", "subscribed", "resubscribe", "admin")
    ]
    change = second["changes"][0]
    assert change["source"] == "api"
    assert change["recorded_at"] == clock().isoformat() == change["occurred_at"]
    with hub.sessions() as session:
        from adapters.store.models import Event

        event = session.get(Event, change["event_id"])
        assert event is not None and event.kind == "resubscribe" and event.email == "ann@example.com"
    empty = _read(url, admin_headers, after=second["next"])
    assert empty == {"changes": [], "next": second["next"]}
    # A cursor stays valid: reading from the first page's again gives the same changes.
    assert _read(url, admin_headers, after=first["next"], limit=2)["changes"] == second["changes"]
    _post(url, admin_headers, email="dan@example.com")
    later = _read(url, admin_headers, after=second["next"])
    assert [c["email"] for c in later["changes"]] == ["dan@example.com"]


def test_limit_defaults_to_100_and_stops_at_1000(make_config, make_hub, serve_app, admin_headers, clock) -> None:
    hub, url = _feed_app(make_config, make_hub, serve_app)
    hub.record([OptOutEvent(f"p{i}@example.com", Kind.UNSUBSCRIBE, Source.IMPORT) for i in range(1005)])
    assert len(_read(url, admin_headers)["changes"]) == 100
    page = _read(url, admin_headers, limit=1000)
    assert len(page["changes"]) == 1000
    rest = _read(url, admin_headers, after=page["next"], limit=1000)
    emails = [c["email"] for c in page["changes"] + rest["changes"]]
    assert sorted(emails) == sorted(f"p{i}@example.com" for i in range(1005))
    for bad in ("0", "1001", "ten", "-1", ""):
        r = requests.get(f"{url}/api/v1/changes", params={"limit": bad}, headers=admin_headers, timeout=5)
        assert (r.status_code, r.json()) == (400, {"error": "limit: a whole number from 1 to 1000"}), bad


def test_a_cursor_the_feed_did_not_issue_is_400(make_config, make_hub, serve_app, admin_headers) -> None:
    _, url = _feed_app(make_config, make_hub, serve_app)
    for bad in ("nope", "%%%", "MS4y", "YS5i", "MTIz", "LTEuMg", "x" * 5000):
        r = requests.get(f"{url}/api/v1/changes", params={"after": bad}, headers=admin_headers, timeout=5)
        assert (r.status_code, r.json()) == (400, {"error": "after: not a cursor this feed issued"}), bad


def test_the_feed_token_reads_the_feed_and_nothing_else(make_config, make_hub, serve_app, admin_headers) -> None:
    _, url = _feed_app(make_config, make_hub, serve_app)
    _post(url, admin_headers, email="ann@example.com")
    feed = {"Authorization": f"Bearer {FEED_TOKEN}"}
    assert [c["email"] for c in _read(url, feed)["changes"]] == ["ann@example.com"]
    for method, path in (
        ("GET", "/api/v1/suppressions/ann@example.com"),
        ("POST", "/api/v1/suppressions"),
        ("GET", "/api/v1/audit/ann@example.com"),
        ("POST", "/api/v1/headers"),
    ):
        r = requests.request(method, f"{url}{path}", json={}, headers=feed, timeout=5)
        assert r.status_code == 401, path
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {FEED_TOKEN}"}):
        r = requests.get(f"{url}/api/v1/changes", headers=headers, timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "missing or invalid bearer token"})


def test_without_a_feed_token_configured_only_the_admin_reads(live_app: LiveServer, admin_headers) -> None:
    r = requests.get(f"{live_app.url}/api/v1/changes", headers={"Authorization": "Bearer "}, timeout=5)
    assert r.status_code == 401
    assert _read(live_app.url, admin_headers) == {"changes": [], "next": _read(live_app.url, admin_headers)["next"]}

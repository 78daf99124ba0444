"""A store that cannot be reached is a 503 with ``Retry-After`` on every route, over real HTTP:
JSON for providers, mail clients and scripts, the HTML error page for browsers on pages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import make_url

from adapters.config import Config
from adapters.hub import Hub
from adapters.store import database
from tests.support.environment import ADMIN_TOKEN
from tests.support.pages import TOPICS, issue_token
from tests.support.servers import free_port
from webhooks import create_app
from webhooks.errors import RETRY_AFTER_SECONDS

MAILCHIMP_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BROWSER = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


def unreachable_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind that cannot be opened: an SQLite file in a missing
    directory, a PostgreSQL server on a port where nothing listens."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / 'missing' / 'optout-hub.db'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/optouthub?connect_timeout=2"


@pytest.fixture
def down(
    database_url: str,
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], Any],
) -> tuple[str, str]:
    """(url of the app whose database went away, a token issued while it was there)."""
    hub = make_hub(
        make_config(
            {"topics": TOPICS, "providers": {"mailchimp": {"enabled": True, "lists": ["abc123"]}}},
            env={"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET},
        )
    )
    token = issue_token(hub, "ann@example.com", "newsletter")
    engine = database.make_engine(unreachable_url(database_url, tmp_path))
    gone = dataclasses.replace(hub, engine=engine, sessions=database.make_sessionmaker(engine))
    server = serve_app(create_app(hub=gone))
    yield server.url, token
    engine.dispose()


def assert_retry_later(r: requests.Response, *, html: bool = False) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    if html:
        assert r.headers["Content-Type"].startswith("text/html") and "try again" in r.text
    else:
        assert "retry" in r.json()["error"]


def test_provider_webhook(down: tuple[str, str]) -> None:
    url, _ = down
    body = {"type": "unsubscribe", "fired_at": "2026-11-24 11:59:00", "data[email]": "bo@example.com"}
    body |= {"data[list_id]": "abc123", "data[action]": "unsub"}
    assert_retry_later(requests.post(f"{url}/webhooks/mailchimp/{MAILCHIMP_SECRET}", data=body, timeout=10))


def test_one_click(down: tuple[str, str]) -> None:
    url, token = down
    form = {"List-Unsubscribe": "One-Click"}
    assert_retry_later(requests.post(f"{url}/u/{token}", data=form, timeout=10))
    assert_retry_later(requests.get(f"{url}/u/{token}", headers=BROWSER, timeout=10), html=True)


def test_preference_centre(down: tuple[str, str]) -> None:
    url, token = down
    assert_retry_later(requests.get(f"{url}/preferences/{token}", headers=BROWSER, timeout=10), html=True)
    assert_retry_later(requests.post(f"{url}/preferences/{token}", data={"action": "unsubscribe_all"}, timeout=10))


def test_json_api(down: tuple[str, str]) -> None:
    url, _ = down
    optout = {"email": "cy@example.com", "reason": "phone"}
    assert_retry_later(requests.post(f"{url}/api/v1/suppressions", json=optout, headers=BEARER, timeout=10))
    assert_retry_later(requests.get(f"{url}/api/v1/suppressions/cy@example.com", headers=BEARER, timeout=10))


def test_admin_dashboard(down: tuple[str, str]) -> None:
    url, _ = down
    assert_retry_later(requests.get(f"{url}/admin", headers=BEARER, timeout=10))
    assert_retry_later(requests.get(f"{url}/admin", headers=BEARER | BROWSER, timeout=10), html=True)

"""The consent model through the real routes: event order (README "Consent")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from adapters.config import Config
from adapters.consent import MAX_CLOCK_SKEW, effective_time
from adapters.hub import Hub
from adapters.store.queries import address_state
from tests.support.clock import Clock
from tests.support.pages import TOPICS, form_field, issue_token
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.security import CSRF_FIELD

MC_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
MC_ENV = {"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": MC_SECRET}


def serve(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Callable[[Any], LiveServer]
) -> tuple[Hub, str]:
    config = make_config(
        {
            "providers": {"mailchimp": {"enabled": True, "lists": ["abc123"], "base_url": "http://127.0.0.1:9"}},
            "topics": TOPICS,
        },
        env=MC_ENV,
    )
    hub = make_hub(config)
    return hub, serve_app(create_app(hub=hub)).url


def mailchimp_unsubscribe(url: str, email: str, fired_at: str) -> None:
    body = urlencode(
        {"type": "unsubscribe", "fired_at": fired_at, "data[email]": email, "data[list_id]": "abc123"}
    ).encode()
    r = requests.post(
        f"{url}/webhooks/mailchimp/{MC_SECRET}",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def resubscribe_in_centre(hub: Hub, url: str, email: str) -> requests.Response:
    page = f"{url}/preferences/{issue_token(hub, email)}"
    csrf = form_field(requests.get(page, timeout=10).text, CSRF_FIELD)
    return requests.post(page, data={"action": "resubscribe", CSRF_FIELD: csrf}, timeout=10)


def test_effective_time_is_occurrence_clamped_to_receipt_plus_skew() -> None:
    received = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert effective_time(received - timedelta(days=3), received) == received - timedelta(days=3)
    assert effective_time(received + timedelta(minutes=1), received) == received + timedelta(minutes=1)
    assert effective_time(received + timedelta(days=365), received) == received + MAX_CLOCK_SKEW


def test_a_provider_event_dated_a_year_ahead_does_not_freeze_the_state(
    make_config, make_hub, serve_app, clock: Clock
) -> None:
    """Issue 14, case 6: a signed opt-out dated a year ahead, then a real resubscribe today."""
    hub, url = serve(make_config, make_hub, serve_app)
    mailchimp_unsubscribe(url, "ann@example.com", "2027-11-24 12:00:00")
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"]
    clock.advance(MAX_CLOCK_SKEW.total_seconds() + 1)
    r = resubscribe_in_centre(hub, url, "ann@example.com")
    assert r.status_code == 200 and "Welcome back" in r.text
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"] is False

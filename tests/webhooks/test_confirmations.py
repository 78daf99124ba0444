"""Confirmation mail through a real local SMTP sink, and its resubscribe link over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
import requests

from adapters.confirmations import send_confirmation
from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store import address_state
from tests.conftest import Clock, LiveServer, Sink, delivered, free_port
from tests.webhooks.pagehelpers import TOPICS, form_field, issue_token
from webhooks import create_app
from webhooks.security import CSRF_FIELD

ONE_CLICK = {"data": "List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def mail_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], sink: tuple[Sink, int]) -> Hub:
    conf = {"enabled": True, "smtp_port": sink[1], "from_address": "no-reply@unsubscribe.example.com"}
    return make_hub(make_config({"topics": TOPICS, "confirmations": conf}))


@pytest.fixture
def app_url(mail_hub: Hub, serve_app: Callable[[Any], LiveServer]) -> str:
    return serve_app(create_app(hub=mail_hub)).url


def resubscribe_link(msg: EmailMessage) -> str:
    match = re.search(r"https://unsubscribe\.example\.com(/preferences/\S+)", msg.get_content())
    assert match, msg.get_content()
    return match.group(1)


def test_one_click_sends_one_confirmation_whose_link_resubscribes(mail_hub: Hub, app_url: str, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    token = issue_token(mail_hub, "Jo@Example.com", campaign="c1")
    assert requests.post(f"{app_url}/u/{token}", timeout=10, **ONE_CLICK).status_code == 200
    [msg] = delivered(handler, 1)
    assert handler.envelopes == [("no-reply@unsubscribe.example.com", ["Jo@example.com"])]
    assert msg["To"] == "Jo@example.com" and msg["Subject"] == "You are unsubscribed"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Jo@example.com will no longer receive all our emails." in msg.get_content()
    path = resubscribe_link(msg)
    page = requests.get(app_url + path, timeout=10)
    assert "You are unsubscribed from all our emails." in page.text
    r = requests.post(app_url + path, data={"action": "resubscribe", CSRF_FIELD: form_field(page.text, CSRF_FIELD)}, timeout=10)
    assert r.status_code == 200 and "Welcome back" in r.text
    with mail_hub.sessions() as session:
        state = address_state(session, "jo@example.com")
    assert state["suppressed"] is False
    assert [e["kind"] for e in state["events"]] == ["unsubscribe", "resubscribe"]
    delivered(handler, 1)  # a resubscribe is never confirmed by mail


def test_at_most_one_confirmation_per_address_per_day(mail_hub: Hub, app_url: str, sink: tuple[Sink, int], clock: Clock) -> None:
    handler, _ = sink
    for topic in ("newsletter", "offers", None):
        requests.post(f"{app_url}/u/{issue_token(mail_hub, 'kim@example.com', topic=topic)}", timeout=10, **ONE_CLICK)
    [msg] = delivered(handler, 1)
    assert "Monthly newsletter" in msg.get_content() or "Special offers" in msg.get_content() or "all our emails" in msg.get_content()
    clock.advance(24 * 3600)
    requests.post(f"{app_url}/u/{issue_token(mail_hub, 'kim@example.com')}", timeout=10, **ONE_CLICK)
    delivered(handler, 2)


def test_page_language_carries_into_the_mail(mail_hub: Hub, app_url: str, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    requests.post(f"{app_url}/u/{issue_token(mail_hub, 'li@example.com')}?lang=zh", timeout=10, **ONE_CLICK)
    [msg] = delivered(handler, 1)
    assert msg["Subject"] == "您已退订"
    assert resubscribe_link(msg).endswith("?lang=zh")


def smtp_event(kind: Kind = Kind.UNSUBSCRIBE, source: Source = Source.SMTP) -> OptOutEvent:
    return OptOutEvent(email="max@example.com", kind=kind, source=source)


def test_none_for_auto_submitted_complaints_or_other_sources(mail_hub: Hub, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    assert send_confirmation(mail_hub, smtp_event(), auto_submitted=True) is False
    assert send_confirmation(mail_hub, smtp_event(Kind.COMPLAINT), auto_submitted=False) is False
    assert send_confirmation(mail_hub, smtp_event(Kind.RESUBSCRIBE), auto_submitted=False) is False
    for source in (Source.MAILCHIMP, Source.API, Source.IMPORT):
        assert send_confirmation(mail_hub, smtp_event(source=source), auto_submitted=False) is False
    assert handler.messages == []
    assert send_confirmation(mail_hub, smtp_event(), auto_submitted=False) is True
    assert len(handler.messages) == 1


def test_off_by_default(hub: Hub) -> None:
    assert hub.config.confirmations.enabled is False
    assert send_confirmation(hub, smtp_event(), auto_submitted=False) is False


def test_relay_down_frees_the_slot(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], caplog: pytest.LogCaptureFixture) -> None:
    hub = make_hub(make_config({"confirmations": {"enabled": True, "smtp_port": free_port()}}))
    assert send_confirmation(hub, smtp_event(), auto_submitted=False) is False
    assert "refused or unreachable" in caplog.text
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=hub.config.confirmations.smtp_port)
    controller.start()
    try:
        assert send_confirmation(hub, smtp_event(), auto_submitted=False) is True
    finally:
        controller.stop()
    assert len(handler.messages) == 1
    assert urlsplit(resubscribe_link(handler.messages[0])).path.startswith("/preferences/")

"""Confirmation mail: queued with the opt-out, sent by the worker through a real local SMTP
relay (down, refusing, or up), and its resubscribe link over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import select

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.confirmations import queue_confirmation
from adapters.store.models import ConfirmationSend
from adapters.store.queries import address_state
from adapters.worker.confirmations import send_due_confirmations
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.pages import TOPICS, form_field, issue_token
from tests.support.servers import LiveServer, Sink, delivered, free_port
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


def test_one_click_sends_one_confirmation_whose_link_resubscribes(
    mail_hub: Hub, app_url: str, sink: tuple[Sink, int]
) -> None:
    handler, _ = sink
    token = issue_token(mail_hub, "Jo@Example.com", campaign="c1")
    assert requests.post(f"{app_url}/u/{token}", timeout=10, **ONE_CLICK).status_code == 200
    assert [r.state for r in rows(mail_hub)] == ["pending"]  # queued with the opt-out
    assert send_due_confirmations(mail_hub) == 1
    [msg] = delivered(handler, 1)
    assert [(r.state, r.attempts) for r in rows(mail_hub)] == [("sent", 1)]
    assert handler.envelopes == [("no-reply@unsubscribe.example.com", ["Jo@example.com"])]
    assert msg["To"] == "Jo@example.com" and msg["Subject"] == "You are unsubscribed"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Jo@example.com will no longer receive all our emails." in msg.get_content()
    path = resubscribe_link(msg)
    page = requests.get(app_url + path, timeout=10)
    assert "You are unsubscribed from all our emails." in page.text
    r = requests.post(
        app_url + path, data={"action": "resubscribe", CSRF_FIELD: form_field(page.text, CSRF_FIELD)}, timeout=10
    )
    assert r.status_code == 200 and "Welcome back" in r.text
    with mail_hub.sessions() as session:
        state = address_state(session, "jo@example.com")
    assert state["suppressed"] is False
    assert [e["kind"] for e in state["events"]] == ["unsubscribe", "resubscribe"]
    assert send_due_confirmations(mail_hub) == 0  # a resubscribe is never confirmed by mail
    delivered(handler, 1)


def test_at_most_one_confirmation_per_address_per_day(
    mail_hub: Hub, app_url: str, sink: tuple[Sink, int], clock: Clock
) -> None:
    handler, _ = sink
    for topic in ("newsletter", "offers", None):
        requests.post(f"{app_url}/u/{issue_token(mail_hub, 'kim@example.com', topic=topic)}", timeout=10, **ONE_CLICK)
    assert send_due_confirmations(mail_hub) == 1
    [msg] = delivered(handler, 1)
    assert (
        "Monthly newsletter" in msg.get_content()
        or "Special offers" in msg.get_content()
        or "all our emails" in msg.get_content()
    )
    clock.advance(24 * 3600)
    requests.post(f"{app_url}/u/{issue_token(mail_hub, 'kim@example.com')}", timeout=10, **ONE_CLICK)
    assert send_due_confirmations(mail_hub) == 1
    delivered(handler, 2)


def test_page_language_carries_into_the_mail(mail_hub: Hub, app_url: str, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    requests.post(f"{app_url}/u/{issue_token(mail_hub, 'li@example.com')}?lang=zh", timeout=10, **ONE_CLICK)
    assert send_due_confirmations(mail_hub) == 1
    [msg] = delivered(handler, 1)
    assert msg["Subject"] == "您已退订"
    assert resubscribe_link(msg).endswith("?lang=zh")


def smtp_event(kind: Kind = Kind.UNSUBSCRIBE, source: Source = Source.SMTP) -> OptOutEvent:
    return OptOutEvent(email="max@example.com", kind=kind, source=source)


def queue(hub: Hub, event: OptOutEvent, *, auto_submitted: bool = False) -> bool:
    with hub.sessions.begin() as session:
        return queue_confirmation(session, hub.config, event, auto_submitted=auto_submitted, now=hub.clock())


def rows(hub: Hub) -> list[ConfirmationSend]:
    with hub.sessions() as session:
        return list(session.scalars(select(ConfirmationSend).order_by(ConfirmationSend.id)))


def test_none_for_auto_submitted_complaints_or_other_sources(mail_hub: Hub, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    assert queue(mail_hub, smtp_event(), auto_submitted=True) is False
    assert queue(mail_hub, smtp_event(Kind.COMPLAINT)) is False
    assert queue(mail_hub, smtp_event(Kind.RESUBSCRIBE)) is False
    for source in (Source.MAILCHIMP, Source.API, Source.IMPORT):
        assert queue(mail_hub, smtp_event(source=source)) is False
    assert rows(mail_hub) == [] and send_due_confirmations(mail_hub) == 0
    assert queue(mail_hub, smtp_event()) is True
    assert queue(mail_hub, smtp_event()) is False  # today's slot is taken
    assert send_due_confirmations(mail_hub) == 1
    assert len(delivered(handler, 1)) == 1


def test_off_by_default(hub: Hub) -> None:
    assert hub.config.confirmations.enabled is False
    assert queue(hub, smtp_event()) is False


def relay_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], port: int) -> Hub:
    return make_hub(
        make_config({"confirmations": {"enabled": True, "smtp_port": port}, "worker": {"backoff_base_seconds": 2}})
    )


def test_relay_down_keeps_the_mail_and_the_worker_sends_it_later(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    hub = relay_hub(make_config, make_hub, free_port())
    assert queue(hub, smtp_event()) is True
    assert send_due_confirmations(hub) == 0  # the relay is down
    [row] = rows(hub)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, clock.now + timedelta(seconds=2))
    assert "refused or unreachable (ConnectionRefusedError)" in row.last_error
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=hub.config.confirmations.smtp_port)
    controller.start()
    try:
        assert send_due_confirmations(hub) == 0  # not due yet: the relay is not even called
        clock.advance(2)
        totals = Worker(hub, {}, http=requests.Session()).drain()  # what `optout-hub sync` runs
        assert totals == {}
        delivered(handler, 1)
    finally:
        controller.stop()
    [row] = rows(hub)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 2, clock.now)
    assert urlsplit(resubscribe_link(handler.messages[0])).path.startswith("/preferences/")


def test_a_day_late_it_is_given_up(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    hub = relay_hub(make_config, make_hub, free_port())
    queue(hub, smtp_event())
    for _ in range(30):  # the relay stays down for 30 hours; each hour the mail is due again
        send_due_confirmations(hub)
        clock.advance(3600)
    [row] = rows(hub)
    assert row.state == "dead" and row.sent_at is None and "unreachable" in row.last_error
    assert row.attempts == 25  # hours 0 to 24; then nothing more is tried


class RefusingRelay(Sink):
    """A relay that refuses one recipient for good and another for now."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 <gone@example.com>: no such user"
        if address.startswith("busy@"):
            return "452 4.2.2 mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_the_relay_refusing_a_recipient(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> None:
    handler, port = RefusingRelay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        hub = relay_hub(make_config, make_hub, port)
        for email in ("gone@example.com", "busy@example.com", "fine@example.com"):
            queue(hub, OptOutEvent(email=email, kind=Kind.UNSUBSCRIBE, source=Source.ONECLICK))
        assert send_due_confirmations(hub) == 1  # one session: the refusals do not stop the rest
        delivered(handler, 1)
    finally:
        controller.stop()
    states = {r.email: (r.state, r.last_error) for r in rows(hub)}
    assert states["gone@example.com"] == (
        "dead",
        "relay refused the recipient: 550 5.1.1 <gone@example.com>: no such user",
    )
    assert states["busy@example.com"] == ("pending", "relay refused the recipient: 452 4.2.2 mailbox full, try later")
    assert states["fine@example.com"] == ("sent", None)

"""Mailchimp's audience webhook over real HTTP: the secret URL, the GET check, form bodies,
list-to-topic mapping, and the shared webhook cases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import select

from adapters.store.models import Event, Evidence
from adapters.store.queries import address_state
from tests.support.webhook_cases import Delivery, Running, WebhookCases

SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "MailChimp"}


def form(type_: str, path_secret: str = SECRET, **data: str) -> Delivery:
    fields = {"type": type_, "fired_at": "2026-11-24 11:59:00", **{f"data[{k}]": v for k, v in data.items()}}
    return Delivery(urlencode(fields).encode(), dict(FORM), f"/webhooks/mailchimp/{path_secret}")


class TestMailchimpWebhook(WebhookCases):
    provider = "mailchimp"
    bad_signature_status = 404

    def config_data(self, fake_url: str) -> dict[str, Any]:
        return {
            "providers": {"mailchimp": {"enabled": True, "lists": ["abc123", "def456"], "base_url": fake_url}},
            "topics": [{"name": "newsletter", "mailchimp_list": "abc123"}],
        }

    def env(self) -> dict[str, str]:
        return {"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": SECRET}

    def optouts(self, emails: Sequence[str]) -> list[Delivery]:
        """Mailchimp sends one event per request."""
        return [form("unsubscribe", action="unsub", reason="manual", list_id="def456", email=e) for e in emails]

    def unsigned(self, delivery: Delivery) -> Delivery:
        return delivery.replace(path="/webhooks/mailchimp/" + SECRET[:-1] + "x")

    def tampered(self, delivery: Delivery) -> Delivery:
        # There is no signature over the body; a changed secret is the "one byte" here.
        return self.unsigned(delivery)

    def malformed(self) -> list[Delivery]:
        good = form("unsubscribe", action="unsub", reason="manual", list_id="abc123", email="a@example.com")
        return [
            good.replace(headers={"Content-Type": "application/json"}),
            good.replace(body=b"type=unsubscribe&data%5Bemail%5D=%FF"),
            form("unsubscribe", action="unsub", list_id="abc123"),
            form("unsubscribe", action="unsub", list_id="abc123", email="not an address"),
            form("unsubscribe", action="unsub", list_id="unknown9", email="a@example.com"),
        ]

    def test_get_is_the_url_check(self, running: Running) -> None:
        assert requests.get(running.server.url + f"/webhooks/mailchimp/{SECRET}", timeout=5).status_code == 200
        assert requests.get(running.server.url + "/webhooks/mailchimp/guess", timeout=5).status_code == 404

    def test_post_without_type_is_200_and_stores_nothing(self, running: Running) -> None:
        for body in (b"", b"fired_at=2026-11-24+11%3A59%3A00"):
            r = running.post(Delivery(body, dict(FORM), f"/webhooks/mailchimp/{SECRET}"))
            assert r.status_code == 200
        assert running.count(Evidence) == 0

    def test_kinds_scopes_and_the_providers_own_resubscribe(self, running: Running) -> None:
        for delivery in (
            form("unsubscribe", action="unsub", reason="manual", list_id="abc123", email="topic@example.com"),
            form("unsubscribe", action="unsub", reason="abuse", list_id="def456", email="abuse@example.com"),
            form("cleaned", reason="hard", list_id="def456", email="bounce@example.com"),
            form("profile", list_id="abc123", email="profile@example.com"),
            form("upemail", list_id="abc123", old_email="old@example.com", new_email="new@example.com"),
        ):
            assert running.post(delivery).status_code == 200
        with running.hub.sessions() as session:
            rows = {(e.email, e.kind, e.scope, e.reason) for e in session.scalars(select(Event))}
        assert rows == {
            ("topic@example.com", "unsubscribe", "topic:newsletter", "manual"),
            ("abuse@example.com", "complaint", "global", "abuse"),
            ("bounce@example.com", "bounce", "global", "hard"),
        }
        resubscribe = {
            "type": "subscribe",
            "fired_at": "2026-11-24 12:01:00",
            "data[list_id]": "abc123",
            "data[email]": "topic@example.com",
            "data[ip_opt]": "198.51.100.7",  # the person's own confirmation (README "Consent")
        }
        assert (
            running.post(
                Delivery(urlencode(resubscribe).encode(), dict(FORM), f"/webhooks/mailchimp/{SECRET}")
            ).status_code
            == 200
        )
        with running.hub.sessions() as session:
            assert address_state(session, "topic@example.com")["suppressed"] is False

    def test_text_databases_refuse_is_stored_cleaned(self, running: Running) -> None:
        delivery = form("unsubscribe", action="unsub", reason="manual\x00", list_id="def456", email="ann@example.com")
        assert b"%00" in delivery.body
        assert running.post(delivery).status_code == 200
        with running.hub.sessions() as session:
            assert session.scalars(select(Event.reason)).all() == ["manual\ufffd"]

    def test_the_secret_never_reaches_the_evidence(self, running: Running) -> None:
        running.post(self.optouts(["ann@example.com"])[0])
        with running.hub.sessions() as session:
            evidence = session.scalars(select(Evidence)).one()
        assert SECRET not in repr(evidence.meta) and SECRET.encode() not in evidence.content

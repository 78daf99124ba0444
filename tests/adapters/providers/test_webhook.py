"""The provider webhook specs on plain values, no server: every registered provider has one,
and each spec's URL check and ``read`` turn a request's bytes into the delivery the HTTP side
stores (the HTTP side itself: tests/webhooks/test_<slug>_webhook.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.config import PROVIDER_SLUGS, Config, parse_config
from adapters.errors import ConfigError, SignatureError
from adapters.events import Kind, Verification
from adapters.providers import PROVIDER_MODULES, hubspot, mailchimp, sendgrid
from adapters.providers.webhook import ContactLookups, OptOuts, UrlRule, WebhookRequest, WebhookSpec
from tests.support.hubspot import SECRET as HUBSPOT_SECRET
from tests.support.hubspot import sign as hubspot_sign
from tests.support.sendgrid import make_key

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAILCHIMP_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
PUBLIC_URL = "https://unsubscribe.example.com"
ENV = {
    "MAILCHIMP_API_KEY": "0123456789abcdef-us6",
    "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET,
    "SENDGRID_API_KEY": "SG.x",
    "HUBSPOT_ACCESS_TOKEN": "pat",
}


def config(slug: str, settings: dict[str, Any] | None = None, **env: str) -> Config:
    """A Config with one provider enabled (Mailchimp with the list ``l1`` mapped to a topic)."""
    topics = [{"name": "news", "mailchimp_list": "l1"}] if slug == "mailchimp" else []
    data = {"http": {"public_url": PUBLIC_URL}, "providers": {slug: {"enabled": True, **(settings or {})}}}
    return parse_config({**data, "topics": topics}, {**ENV, **env})


def request(body: bytes, content_type: str, path: str, **headers: str) -> WebhookRequest:
    path, _, query = path.partition("?")
    return WebhookRequest("POST", path, query, {"Content-Type": content_type, **headers}, content_type, body)


@pytest.mark.parametrize("slug", [s for s in PROVIDER_SLUGS if s != "constant_contact"])
def test_every_provider_with_webhooks_has_a_webhook_spec(slug: str) -> None:
    spec = PROVIDER_MODULES[slug].WEBHOOK
    assert isinstance(spec, WebhookSpec)
    assert 400 <= spec.refusal_status < 500 and spec.refusal_message
    kept = " ".join(spec.evidence_headers).lower()
    assert "signature" not in kept and "secret" not in kept


def test_the_registry_names_every_configurable_provider() -> None:
    assert set(PROVIDER_MODULES) == set(PROVIDER_SLUGS)


def test_url_rule_routes_get_only_for_a_get_check() -> None:
    assert UrlRule().methods == ("POST",)
    assert mailchimp.WEBHOOK.url.methods == ("GET", "POST")
    assert mailchimp.WEBHOOK.url.path == "/<secret>"


def test_mailchimp_url_check_is_the_secret_path_segment() -> None:
    check = mailchimp.WEBHOOK.url.check
    assert check is not None
    with_secret = config("mailchimp")
    check({"secret": MAILCHIMP_SECRET}, with_secret)
    with pytest.raises(SignatureError):
        check({"secret": MAILCHIMP_SECRET[:-1]}, with_secret)
    with pytest.raises(SignatureError):  # no secret configured: every URL is refused
        check({"secret": ""}, config("mailchimp", {"webhook_secret_env": ""}))


def test_mailchimp_reads_one_form_event_scoped_by_its_list() -> None:
    body = urlencode({"type": "unsubscribe", "data[list_id]": "l1", "data[email]": "Ann@Example.com"}).encode()
    delivery = mailchimp.WEBHOOK.read(
        request(body, "application/x-www-form-urlencoded", f"/webhooks/mailchimp/{MAILCHIMP_SECRET}"),
        config("mailchimp"),
        NOW,
    )
    assert isinstance(delivery, OptOuts)
    [event] = delivery.events
    assert (event.email, event.kind, event.scope, event.verification, event.received_at) == (
        "Ann@example.com",
        Kind.UNSUBSCRIBE,
        "topic:news",
        Verification.TOKEN,
        NOW,
    )


def test_sendgrid_without_a_public_key_reads_unverified_events() -> None:
    body = json.dumps([{"event": "spamreport", "email": "bob@example.com", "sg_event_id": "e1"}]).encode()
    delivery = sendgrid.WEBHOOK.read(
        request(body, "application/json", "/webhooks/sendgrid"),
        config("sendgrid", {"webhook_public_key_env": ""}),
        NOW,
    )
    assert isinstance(delivery, OptOuts)
    assert [(e.kind, e.verification) for e in delivery.events] == [(Kind.COMPLAINT, Verification.NONE)]


def test_sendgrid_with_a_public_key_refuses_an_unsigned_delivery() -> None:
    with_key = config("sendgrid", SENDGRID_WEBHOOK_PUBLIC_KEY=make_key()[1])
    with pytest.raises(SignatureError):
        sendgrid.WEBHOOK.read(request(b"[]", "application/json", "/webhooks/sendgrid"), with_key, NOW)


def test_sendgrid_checks_its_public_key_at_start_up() -> None:
    check = sendgrid.WEBHOOK.check_config
    assert check is not None
    check(config("sendgrid", {"webhook_public_key_env": ""}))  # no key: nothing to load
    with pytest.raises(ConfigError, match="webhook_public_key_env"):
        check(config("sendgrid", SENDGRID_WEBHOOK_PUBLIC_KEY="not a key"))


def test_hubspot_reads_contact_ids_signed_over_the_public_url_and_query() -> None:
    body = json.dumps(
        [
            {
                "objectId": 42,
                "propertyName": "hs_email_optout",
                "propertyValue": "true",
                "eventId": 1,
                "subscriptionId": 2,
                "portalId": 3,
                "occurredAt": 1764000000000,
                "subscriptionType": "contact.propertyChange",
            }
        ]
    ).encode()
    hub_config = config("hubspot", HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET)
    signed = hubspot_sign(body, when=NOW, uri=f"{PUBLIC_URL}/webhooks/hubspot?a=b:c")
    delivery = hubspot.WEBHOOK.read(
        request(body, "application/json", "/webhooks/hubspot?a=b%3Ac", **signed), hub_config, NOW
    )
    assert isinstance(delivery, ContactLookups)
    [contact] = delivery.events
    assert (contact.object_id, contact.kind) == ("42", Kind.UNSUBSCRIBE)
    assert contact.to_json()["reason"] == "hs_email_optout"
    with pytest.raises(SignatureError):  # the same signature for another path
        hubspot.WEBHOOK.read(request(body, "application/json", "/webhooks/hubspot", **signed), hub_config, NOW)

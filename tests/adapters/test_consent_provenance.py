"""Provenance and precedence through the real routes, the fake providers and the worker:
who may lift which opt-out (README "Consent"; issue 14, case 5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from adapters.config import Config
from adapters.events import Actor
from adapters.hub import Hub
from adapters.providers import hubspot, make_clients
from adapters.store.models import ConsentConflict, Event, OutboxRow
from adapters.store.queries import address_state
from adapters.worker.outbox import Worker
from tests.support import hubspot as hubspot_support
from tests.support import sendgrid as sendgrid_support
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN
from tests.support.fake_providers import FakeProviders, provider_env_vars
from tests.support.pages import form_field, issue_token
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.security import CSRF_FIELD

MC_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
PUBLIC_URL = "https://unsubscribe.example.com"
NEWS = "topic:newsletter"


class Site:
    """The hub with every provider enabled at the fakes, its app over real HTTP, and a
    person's or provider's ways in."""

    def __init__(self, hub: Hub, url: str, fakes: FakeProviders, sendgrid_key: Any) -> None:
        self.hub, self.url, self.fakes, self.sendgrid_key = hub, url, fakes, sendgrid_key

    def drain(self) -> None:
        with requests.Session() as http:
            Worker(
                self.hub, make_clients(self.hub.config, http, now=self.hub.clock), http=http, rng=lambda: 1.0
            ).drain()

    def preferences(self, email: str, action: str, **fields: Any) -> None:
        page = f"{self.url}/preferences/{issue_token(self.hub, email)}"
        csrf = form_field(requests.get(page, timeout=10).text, CSRF_FIELD)
        r = requests.post(page, data={"action": action, CSRF_FIELD: csrf, **fields}, timeout=10)
        assert r.status_code == 200, r.text

    def mailchimp(self, type_: str, email: str, **data: str) -> None:
        fields = {"type": type_, "fired_at": self.hub.clock().strftime("%Y-%m-%d %H:%M:%S"), "data[email]": email}
        fields.update({f"data[{k}]": v for k, v in {"list_id": "list1", **data}.items()})
        r = requests.post(
            f"{self.url}/webhooks/mailchimp/{MC_SECRET}",
            data=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert r.status_code == 200, r.text

    def sendgrid(self, event: str, email: str, n: int) -> None:
        stamp = int(self.hub.clock().timestamp())
        body = json.dumps(
            [{"email": email, "event": event, "timestamp": stamp, "sg_event_id": f"sg-{n}", "asm_group_id": 1234}]
        ).encode()
        headers = {"Content-Type": "application/json", **sendgrid_support.sign(self.sendgrid_key, body, str(stamp))}
        assert requests.post(f"{self.url}/webhooks/sendgrid", data=body, headers=headers, timeout=10).status_code < 300

    def hubspot(self, object_id: int, value: str, change_source: str) -> None:
        item = {
            "objectId": object_id,
            "propertyName": "hs_email_optout",
            "propertyValue": value,
            "changeSource": change_source,
            "eventId": 7,
            "subscriptionId": 25,
            "portalId": 33,
            "occurredAt": int(self.hub.clock().timestamp() * 1000),
            "subscriptionType": "contact.propertyChange",
        }
        body = json.dumps([item]).encode()
        uri = hubspot.signature_uri(PUBLIC_URL, "/webhooks/hubspot", "")
        headers = {"Content-Type": "application/json", **hubspot_support.sign(body, when=self.hub.clock(), uri=uri)}
        assert requests.post(f"{self.url}/webhooks/hubspot", data=body, headers=headers, timeout=10).status_code == 200

    def api_resubscribe(self, email: str, **fields: str) -> None:
        r = requests.post(
            f"{self.url}/api/v1/suppressions",
            json={"email": email, "kind": "resubscribe", "reason": "asked us by phone", **fields},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text

    def suppressed(self, email: str) -> list[str]:
        with self.hub.sessions() as session:
            return address_state(session, email)["scopes"]

    def conflicts(self) -> list[tuple[str, str, str, str | None, str]]:
        """(address, scope, source, actor, source of the opt-out in force) per conflict."""
        with self.hub.sessions() as session:
            stmt = (
                select(Event.email, Event.scope, Event.source, Event.actor, ConsentConflict.opt_out_source)
                .join(ConsentConflict, ConsentConflict.event_id == Event.id)
                .order_by(Event.id)
            )
            return [tuple(r) for r in session.execute(stmt)]


@pytest.fixture
def site(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
    fake_providers: FakeProviders,
    clock: Clock,
) -> Site:
    key, public = sendgrid_support.make_key()
    config = make_config(
        {
            "http": {"public_url": PUBLIC_URL},
            "providers": {
                "mailchimp": {
                    "enabled": True,
                    "lists": ["list1", "list2"],
                    "base_url": fake_providers.url("mailchimp"),
                },
                "sendgrid": {"enabled": True, "base_url": fake_providers.url("sendgrid")},
                "hubspot": {"enabled": True, "subscription_ids": ["5678"], "base_url": fake_providers.url("hubspot")},
            },
            "worker": {"collect_window_seconds": 0.0, "poll_interval_seconds": 0.05},
            "topics": [
                {
                    "name": "newsletter",
                    "mailchimp_list": "list1",
                    "sendgrid_group": 1234,
                    "hubspot_subscription": "5678",
                }
            ],
        },
        env={
            **provider_env_vars(),
            "MAILCHIMP_WEBHOOK_SECRET": MC_SECRET,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public,
            "HUBSPOT_CLIENT_SECRET": hubspot_support.SECRET,
        },
    )
    hub = make_hub(config)
    return Site(hub, serve_app(create_app(hub=hub)).url, fake_providers, key)


def test_a_crm_users_resubscribe_changes_nothing_anywhere_and_hubspot_is_put_back(site: Site, clock: Clock) -> None:
    """A person's global opt-out; a HubSpot employee then clears hs_email_optout (CRM_UI)."""
    email = "ann@example.com"
    site.preferences(email, "unsubscribe_all")
    site.drain()
    assert site.fakes.hubspot.unsubscribed_all == {email}
    site.fakes.hubspot.contacts["101"] = email
    site.fakes.hubspot.unsubscribed_all.clear()  # what the employee's click did at HubSpot
    clock.advance(60)
    site.hubspot(101, "false", "CRM_UI")
    site.drain()
    assert site.suppressed(email) == ["global"]
    assert site.conflicts() == [(email, "global", "hubspot", Actor.STAFF.value, "preferences")]
    assert site.fakes.hubspot.unsubscribed_all == {email}  # pushed back
    assert site.fakes.sendgrid.global_suppressions == {email}
    assert [c.method for c in site.fakes.sendgrid.calls].count("DELETE") == 0
    assert {lst: m.get(email) for lst, m in site.fakes.mailchimp.members.items()} == {
        "list1": "unsubscribed",
        "list2": "unsubscribed",
    }


def test_a_mailchimp_subscribe_lifts_only_the_persons_own_mailchimp_opt_out(site: Site, clock: Clock) -> None:
    own, other = "mc-own@example.com", "mc-other@example.com"
    site.mailchimp("unsubscribe", own, action="unsub")
    site.preferences(other, "save")  # unticks every topic: the newsletter opt-out is the hub's
    site.drain()
    clock.advance(60)
    site.mailchimp("subscribe", own)  # an admin add or import: no confirmation by the person
    site.mailchimp("subscribe", other, ip_opt="198.51.100.7")  # the person, but not Mailchimp's opt-out
    site.drain()
    assert site.suppressed(own) == [NEWS] and site.suppressed(other) == [NEWS]
    assert site.conflicts() == [
        (own, NEWS, "mailchimp", Actor.STAFF.value, "mailchimp"),
        (other, NEWS, "mailchimp", Actor.PERSON.value, "preferences"),
    ]
    assert site.fakes.mailchimp.members["list1"] == {own: "unsubscribed", other: "unsubscribed"}  # pushed back
    clock.advance(60)
    site.mailchimp("subscribe", own, ip_opt="198.51.100.7")  # the person confirmed at Mailchimp
    site.drain()
    assert site.suppressed(own) == []
    with site.hub.sessions() as session:
        pushed = session.execute(select(OutboxRow.provider, OutboxRow.action).where(OutboxRow.email == own)).all()
    assert ("mailchimp", "resubscribe") not in pushed  # never echoed back to its source


def test_a_sendgrid_group_resubscribe_lifts_only_a_sendgrid_group_opt_out(site: Site, clock: Clock) -> None:
    own, other = "sg-own@example.com", "sg-other@example.com"
    site.sendgrid("group_unsubscribe", own, 1)
    site.preferences(other, "save")
    site.drain()
    assert site.fakes.sendgrid.group_suppressions == {1234: {other}}
    site.fakes.sendgrid.group_suppressions[1234].discard(other)  # the person rejoined at SendGrid
    clock.advance(60)
    site.sendgrid("group_resubscribe", own, 2)
    site.sendgrid("group_resubscribe", other, 3)
    site.drain()
    assert site.suppressed(own) == [] and site.suppressed(other) == [NEWS]
    assert site.conflicts() == [(other, NEWS, "sendgrid", Actor.PERSON.value, "preferences")]
    assert site.fakes.sendgrid.group_suppressions == {1234: {other}}


def test_an_api_resubscribe_needs_the_admins_name(site: Site, clock: Clock) -> None:
    email = "api@example.com"
    site.preferences(email, "unsubscribe_all")
    clock.advance(60)
    site.api_resubscribe(email)
    assert site.suppressed(email) == ["global"]
    assert site.conflicts() == [(email, "global", "api", Actor.STAFF.value, "preferences")]
    clock.advance(60)
    site.api_resubscribe(email, admin="Dana Ops")
    assert site.suppressed(email) == []
    with site.hub.sessions() as session:
        lifted = session.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
    assert (lifted.actor, lifted.meta, lifted.reason) == (Actor.ADMIN.value, {"admin": "Dana Ops"}, "asked us by phone")
    with site.hub.sessions() as session:
        history = address_state(session, email)["events"]
    assert [(e["source"], e["actor"]) for e in history] == [
        ("preferences", "person"),
        ("api", "staff"),
        ("api", "admin"),
    ]


def test_a_provider_re_adding_a_topic_under_a_global_opt_out_is_a_conflict_and_put_back(
    site: Site, clock: Clock
) -> None:
    email = "gl@example.com"
    site.preferences(email, "unsubscribe_all")
    site.drain()
    site.fakes.mailchimp.members["list1"][email] = "subscribed"  # an admin add at Mailchimp
    clock.advance(60)
    site.mailchimp("subscribe", email)
    site.drain()
    assert site.suppressed(email) == ["global"]
    assert site.conflicts() == [(email, NEWS, "mailchimp", Actor.STAFF.value, "preferences")]
    assert site.fakes.mailchimp.members["list1"][email] == "unsubscribed"

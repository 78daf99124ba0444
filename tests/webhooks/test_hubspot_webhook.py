"""HubSpot's app webhook over real HTTP: v3 signatures over the public URL, the 5-minute
window, storing contact ids durably, and resolving them later against a fake contacts API
that is down at first. Plus the shared webhook cases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest
import requests
from sqlalchemy import select

from adapters.providers import hubspot
from adapters.store.models import Event, Evidence, PendingLookup
from adapters.store.queries import address_state
from adapters.worker.lookups import resolve_pending_lookups
from tests.support.fake_providers import FakeContactsAPI
from tests.support.hubspot import SECRET, TOKEN, sign
from tests.support.webhook_cases import Delivery, Running, WebhookCases

PUBLIC_URL = "https://unsubscribe.example.com"


def event(object_id: int, value: str = "true", n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "objectId": object_id,
        "propertyName": "hs_email_optout",
        "propertyValue": value,
        "changeSource": "CRM",
        "eventId": 3816279340 + n,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1764000000000 + n,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        **extra,
    }


class TestHubSpotWebhook(WebhookCases):
    provider = "hubspot"
    bad_signature_status = 401
    stored_model = PendingLookup

    def delivery(
        self, body: bytes, *, when: datetime | None = None, query: str = "", content_type: str = "application/json"
    ) -> Delivery:
        path = "/webhooks/hubspot" + (f"?{query}" if query else "")
        headers = sign(
            body, uri=hubspot.signature_uri(PUBLIC_URL, "/webhooks/hubspot", query), **({"when": when} if when else {})
        )
        return Delivery(body, {"Content-Type": content_type, "User-Agent": "HubSpot Connect 2.0", **headers}, path)

    def config_data(self, fake_url: str) -> dict[str, Any]:
        return {"http": {"public_url": PUBLIC_URL}, "providers": {"hubspot": {"enabled": True, "base_url": fake_url}}}

    def env(self) -> dict[str, str]:
        return {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_CLIENT_SECRET": SECRET}

    def optouts(self, emails: Sequence[str]) -> list[Delivery]:
        # HubSpot names contacts by id: contact 1000+i is the i-th address (see CONTACTS).
        return [self.delivery(json.dumps([event(1000 + i, n=i) for i, _ in enumerate(emails)]).encode())]

    def tampered(self, delivery: Delivery) -> Delivery:
        return delivery.replace(body=delivery.body.replace(b'"objectId": 1000', b'"objectId": 1001', 1))

    def unsigned(self, delivery: Delivery) -> Delivery:
        return delivery.replace(headers={"Content-Type": "application/json"})

    def malformed(self) -> list[Delivery]:
        return [
            self.delivery(b"[{"),
            self.delivery(b'{"objectId": 1}'),
            self.delivery(json.dumps([event(1)]).encode(), content_type="text/plain"),
            self.delivery(json.dumps([{k: v for k, v in event(1).items() if k != "eventId"}]).encode()),
        ]

    def test_signature_window_edges_with_the_injected_clock(self, running: Running) -> None:
        body = json.dumps([event(7)]).encode()
        signed_at = running.hub.clock()
        delivery = self.delivery(body, when=signed_at)
        running.hub.clock.advance(300)  # type: ignore[attr-defined]
        assert running.post(delivery).status_code == 200  # exactly five minutes: accepted
        running.hub.clock.advance(0.001)  # type: ignore[attr-defined]
        assert running.post(self.delivery(json.dumps([event(8)]).encode(), when=signed_at)).status_code == 401
        assert [r.object_id for r in _pending(running)] == ["7"]

    def test_signature_covers_the_public_url_and_decoded_query(self, running: Running) -> None:
        body = json.dumps([event(9)]).encode()
        assert running.post(self.delivery(body, query="portal=33&next=a%3Ab%2Fc")).status_code == 200
        wrong_host = sign(body, uri="http://127.0.0.1/webhooks/hubspot")
        r = running.post(Delivery(body, {"Content-Type": "application/json", **wrong_host}, "/webhooks/hubspot"))
        assert r.status_code == 401

    def test_mixed_batch_queues_only_opt_out_changes(self, running: Running) -> None:
        body = json.dumps(
            [
                event(1),
                event(2, value="false", n=1),
                {**event(3, n=2), "propertyName": "firstname"},
                {**event(4, n=3), "subscriptionType": "contact.creation"},
            ]
        ).encode()
        r = running.post(self.delivery(body))
        assert r.status_code == 200 and r.json() == {"events": 2}
        rows = _pending(running)
        assert [(r.object_id, r.event["kind"]) for r in rows] == [("1", "unsubscribe"), ("2", "resubscribe")]
        assert all(r.evidence_id is not None and r.next_attempt_at == running.hub.clock() for r in rows)

    def test_evidence_keeps_the_user_agent_and_the_signed_timestamp(self, running: Running) -> None:
        [delivery] = self.optouts(["ann@example.com"])
        assert running.post(delivery).status_code == 200
        with running.hub.sessions() as session:
            meta = session.scalars(select(Evidence.meta)).one()
        assert meta == {
            "remote_addr": "127.0.0.1",
            "User-Agent": "HubSpot Connect 2.0",
            hubspot.TIMESTAMP_HEADER: delivery.headers[hubspot.TIMESTAMP_HEADER],
        }

    def test_contact_ids_resolve_after_hubspot_comes_back(
        self, start: Callable[..., Running], fake_contacts: FakeContactsAPI
    ) -> None:
        running = start(self.config_data(fake_contacts.url))
        assert running.post(self.optouts(["ann@example.com", "bob@example.com"])[0]).status_code == 200
        http = requests.Session()
        for _ in range(2):  # HubSpot's contacts API is down: rows stay, backed off
            assert resolve_pending_lookups(running.hub, http) == 0
            running.hub.clock.advance(3600)  # type: ignore[attr-defined]
        assert [r.attempts for r in _pending(running)] == [2, 2]
        assert resolve_pending_lookups(running.hub, http) == 2
        assert fake_contacts.unexpected == [] and _pending(running) == []
        with running.hub.sessions() as session:
            events = session.scalars(select(Event).order_by(Event.email)).all()
            state = address_state(session, "contact0@example.com")
        assert [(e.email, e.kind, e.source, e.verification) for e in events] == [
            ("contact0@example.com", "unsubscribe", "hubspot", "signature"),
            ("contact1@example.com", "unsubscribe", "hubspot", "signature"),
        ]
        assert state["suppressed"] is True
        with running.hub.sessions() as session:
            assert session.get(Evidence, events[0].evidence_id).source == "hubspot"

    def test_an_overlong_timestamp_header_is_refused_not_a_500(self, running: Running) -> None:
        [delivery] = self.optouts(["ann@example.com"])
        for stamp in ("9" * 5000, "1" * 21):
            r = running.post(delivery.replace(headers={**delivery.headers, hubspot.TIMESTAMP_HEADER: stamp}))
            assert r.status_code == self.bad_signature_status, r.text
        assert running.count(PendingLookup) == 0

    def test_text_databases_refuse_is_queued_and_resolved_cleaned(self, start: Callable[..., Running]) -> None:
        """A NUL in ``changeSource`` once failed the queued lookups of the whole delivery on
        PostgreSQL, round after round; now it is U+FFFD and every contact resolves."""
        fake = FakeContactsAPI(TOKEN, {"1000": "ann@example.com", "1001": "bob@example.com"})
        try:
            running = start(self.config_data(fake.url))
            body = json.dumps([event(1000, changeSource="CRM\x00\udc80"), event(1001, n=1)]).encode()
            assert running.post(self.delivery(body)).status_code == 200
            assert [r.event["metadata"]["change_source"] for r in _pending(running)] == ["CRM\ufffd\ufffd", "CRM"]
            assert resolve_pending_lookups(running.hub, requests.Session()) == 2
        finally:
            fake.close()
        with running.hub.sessions() as session:
            sources = [e.meta["change_source"] for e in session.scalars(select(Event).order_by(Event.email))]
        assert sources == ["CRM\ufffd\ufffd", "CRM"] and _pending(running) == []

    @pytest.fixture
    def fake_contacts(self) -> Iterator[FakeContactsAPI]:
        fake = FakeContactsAPI(TOKEN, {str(1000 + i): f"contact{i}@example.com" for i in range(5)}, down_for=2)
        yield fake
        fake.close()


def _pending(running: Running) -> list[PendingLookup]:
    with running.hub.sessions() as session:
        return list(session.scalars(select(PendingLookup).order_by(PendingLookup.object_id)))

"""HubSpot test material: the app's credentials, v3 request signatures, and contact ids queued
for lookup the way the webhook stores them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

from adapters.hub import Hub
from adapters.providers import hubspot
from adapters.store.lookups import queue_lookups
from adapters.store.models import Evidence

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECRET = "hubspot-client-secret-for-tests"
TOKEN = "pat-na1-test-access-token"
URI = "https://unsubscribe.example.com/webhooks/hubspot"


def sign(
    body: bytes, *, when: datetime = NOW, method: str = "POST", uri: str = URI, secret: str = SECRET
) -> dict[str, str]:
    timestamp = str(int(when.timestamp() * 1000))
    digest = hmac.new(
        secret.encode(), method.encode() + uri.encode() + body + timestamp.encode(), hashlib.sha256
    ).digest()
    return {hubspot.SIGNATURE_HEADER: base64.b64encode(digest).decode(), hubspot.TIMESTAMP_HEADER: timestamp}


def queue(hub: Hub, object_ids: list[str], *, value: str = "true") -> None:
    """Store a delivery the way the webhook does: evidence plus pending lookups."""
    items = [
        {
            "objectId": int(i),
            "propertyName": "hs_email_optout",
            "propertyValue": value,
            "eventId": 100 + n,
            "subscriptionId": 25,
            "portalId": 33,
            "occurredAt": 1764000000000 + n,
            "subscriptionType": "contact.propertyChange",
        }
        for n, i in enumerate(object_ids)
    ]
    body = json.dumps(items).encode()
    events = hubspot.parse_events(body, "application/json", received_at=hub.clock())
    with hub.sessions.begin() as session:
        evidence = Evidence(
            channel="webhook",
            source="hubspot",
            received_at=hub.clock(),
            content=body,
            content_type="application/json",
            meta={},
            state="done",
        )
        session.add(evidence)
        session.flush()
        queue_lookups(session, events, evidence_id=evidence.id, now=hub.clock())

"""HubSpot inbound: v3 signatures, parsing, and resolving contact ids against a fake API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters import storable
from adapters.config import Config, Secret
from adapters.errors import PayloadError, SignatureError
from adapters.events import Actor, Kind
from adapters.hub import Hub
from adapters.providers import hubspot
from adapters.store.models import Event, PendingLookup
from adapters.store.queries import address_state
from adapters.worker.lookups import resolve_pending_lookups
from tests.support import hostile
from tests.support.clock import Clock
from tests.support.fake_providers import FakeContactsAPI
from tests.support.hubspot import NOW, SECRET, TOKEN, URI, queue, sign

PAYLOADS = Path(__file__).with_name("payloads")


def verify(body: bytes, headers: dict[str, str], *, now: datetime = NOW, uri: str = URI) -> None:
    hubspot.verify_signature(body, headers, method="POST", uri=uri, secret=Secret(SECRET), now=now)


def test_signature_uri_uses_public_url_and_decodes_hubspots_escapes() -> None:
    uri = hubspot.signature_uri("https://unsubscribe.example.com/", "/webhooks/hubspot", "b=2&a=x%3Ay%2Fz%40w%2a&c=%20")
    assert uri == "https://unsubscribe.example.com/webhooks/hubspot?b=2&a=x:y/z@w*&c=%20"
    assert hubspot.signature_uri("https://h.example", "/webhooks/hubspot", "") == "https://h.example/webhooks/hubspot"


def test_valid_signature_and_one_changed_byte() -> None:
    body = (PAYLOADS / "hubspot_mixed.json").read_bytes()
    headers = sign(body)
    verify(body, headers)
    verify(body, {k.lower(): v for k, v in headers.items()})
    tampered = body.replace(b"1246965", b"1246964")
    for bad_body, bad_headers, uri in (
        (tampered, headers, URI),
        (body, headers, URI + "?x=1"),
        (body, sign(body, secret="another-secret"), URI),
        (body, sign(body, method="PUT"), URI),
        (body, {hubspot.TIMESTAMP_HEADER: headers[hubspot.TIMESTAMP_HEADER]}, URI),
        (body, {hubspot.SIGNATURE_HEADER: headers[hubspot.SIGNATURE_HEADER]}, URI),
        (body, {**headers, hubspot.TIMESTAMP_HEADER: "soon"}, URI),
        (body, {**headers, hubspot.TIMESTAMP_HEADER: "\u00b2"}, URI),  # a digit to str.isdigit, not to int
        (body, {**headers, hubspot.TIMESTAMP_HEADER: "9" * 400}, URI),
    ):
        with pytest.raises(SignatureError):
            verify(bad_body, bad_headers, uri=uri)
    with pytest.raises(SignatureError, match="client secret"):
        hubspot.verify_signature(body, headers, method="POST", uri=URI, secret=None, now=NOW)


def test_five_minute_window_both_edges() -> None:
    body = b"[]"
    signed_at = NOW - timedelta(minutes=5)
    verify(body, sign(body, when=signed_at))  # exactly five minutes old: accepted
    with pytest.raises(SignatureError, match="5-minute"):
        verify(body, sign(body, when=signed_at - timedelta(milliseconds=1)))
    verify(body, sign(body, when=NOW + timedelta(minutes=5)))  # clock skew the other way
    with pytest.raises(SignatureError, match="5-minute"):
        verify(body, sign(body, when=NOW + timedelta(minutes=5, milliseconds=1)))


def test_mixed_batch_keeps_only_the_opt_out_property() -> None:
    events = hubspot.parse_events((PAYLOADS / "hubspot_mixed.json").read_bytes(), "application/json", received_at=NOW)
    assert [(e.object_id, e.kind, e.scope) for e in events] == [
        ("1246965", Kind.UNSUBSCRIBE, "global"),
        ("1246968", Kind.RESUBSCRIBE, "global"),
    ]
    assert events[0].provider_event_id == "33:25:3816279340:1246965:1462216307945"
    assert events[0].occurred_at == datetime(2016, 5, 2, 19, 11, 47, 945000, tzinfo=UTC)
    assert events[0].to_json()["kind"] == "unsubscribe"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{}", "JSON array"),
        (b"[{]", "not valid JSON"),
        (b'[{"objectId": 1}]', "subscriptionType"),
        (
            b'[{"subscriptionType": "contact.propertyChange", "propertyName": "hs_email_optout", '
            b'"propertyValue": "true", "eventId": 1, "portalId": 2, "subscriptionId": 3, "occurredAt": 4}]',
            "objectId",
        ),
        (
            b'[{"subscriptionType": "contact.propertyChange", "propertyName": "hs_email_optout", '
            b'"propertyValue": "true", "objectId": 9, "portalId": 2, "subscriptionId": 3, "occurredAt": 4}]',
            "eventId",
        ),
        (
            b'[{"subscriptionType": "contact.propertyChange", "propertyName": "hs_email_optout", '
            b'"propertyValue": "true", "objectId": '
            + b"9" * 33
            + b', "eventId": 1, "portalId": 2, "subscriptionId": 3, "occurredAt": 4}]',
            r"objectId: longer than 32",
        ),
        (
            b'[{"subscriptionType": "contact.propertyChange", "propertyName": "hs_email_optout", '
            b'"propertyValue": "true", "objectId": 9, "eventId": "'
            + b"e" * 33
            + b'", "portalId": 2, "subscriptionId": 3, "occurredAt": 4}]',
            r"eventId: longer than 32",
        ),
    ],
)
def test_malformed_bodies_raise_payload_error(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        hubspot.parse_events(body, "application/json", received_at=NOW)


# --- resolving contact ids against a fake contacts API --------------------------------------


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeContactsAPI]]:
    fakes: list[FakeContactsAPI] = []

    def start(contacts: dict[str, str], **kwargs: object) -> FakeContactsAPI:
        fake = FakeContactsAPI(TOKEN, contacts, **kwargs)  # type: ignore[arg-type]
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.close()


def hubspot_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], url: str) -> Hub:
    config = make_config(
        {"providers": {"hubspot": {"enabled": True, "base_url": url}}},
        env={"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_CLIENT_SECRET": SECRET},
    )
    return make_hub(config)


def pending(hub: Hub) -> list[PendingLookup]:
    with hub.sessions() as session:
        return list(session.scalars(select(PendingLookup).order_by(PendingLookup.object_id)))


def test_lookups_wait_while_hubspot_is_down_then_resolve_in_batches(
    make_config, make_hub, fake_api, clock: Clock
) -> None:
    contacts = {str(1000 + i): f"person{i}@example.com" for i in range(150)}
    fake = fake_api(contacts, down_for=2)
    hub = hubspot_hub(make_config, make_hub, fake.url)
    queue(hub, [*contacts, "999"])  # 999: no such contact
    http = requests.Session()

    assert resolve_pending_lookups(hub, http) == 0  # down (503)
    rows = pending(hub)
    assert len(rows) == 151 and {r.attempts for r in rows} == {1}
    assert {r.next_attempt_at for r in rows} == {clock.now + timedelta(seconds=2)}
    assert "503" in rows[0].last_error and TOKEN not in rows[0].last_error

    assert resolve_pending_lookups(hub, http) == 0  # nothing due yet: no call
    assert len(fake.calls) == 1

    clock.advance(2)
    assert resolve_pending_lookups(hub, http) == 0  # still down
    assert {r.attempts for r in pending(hub)} == {2}

    clock.advance(4)
    assert resolve_pending_lookups(hub, http) == 150
    assert fake.unexpected == []
    assert sorted(len(c.body["inputs"]) for c in fake.calls if c.status in (200, 207)) == [51, 100]
    [left] = pending(hub)
    assert (left.object_id, left.attempts) == ("999", 3)
    assert "not found" in left.last_error
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 150
        state = address_state(session, "person7@example.com")
    assert state["suppressed"] is True and state["scopes"] == ["global"]
    assert state["events"][0]["source"] == "hubspot" and state["events"][0]["evidence_id"] is not None
    assert hub.metrics.events.labels("hubspot", "unsubscribe")._value.get() == 150


def test_rate_limit_honours_retry_after_and_a_replay_is_stored_once(
    make_config, make_hub, fake_api, clock: Clock
) -> None:
    fake = fake_api({"1": "ann@example.com"}, down_for=1, down_status=429)
    hub = hubspot_hub(make_config, make_hub, fake.url)
    queue(hub, ["1"])
    queue(hub, ["1"])  # HubSpot retried the delivery: still one pending row
    assert len(pending(hub)) == 1
    http = requests.Session()
    assert resolve_pending_lookups(hub, http) == 0
    [row] = pending(hub)
    assert row.next_attempt_at == clock.now + timedelta(seconds=30)
    clock.advance(30)
    assert resolve_pending_lookups(hub, http) == 1
    queue(hub, ["1"])  # a replay after resolution is resolved again but stored once
    assert resolve_pending_lookups(hub, http) == 1
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
    assert pending(hub) == []


def test_unreachable_api_keeps_rows(make_config, make_hub, clock: Clock) -> None:
    hub = hubspot_hub(make_config, make_hub, "http://127.0.0.1:9")  # discard port: refused
    queue(hub, ["5"])
    assert resolve_pending_lookups(hub, requests.Session()) == 0
    [row] = pending(hub)
    assert row.attempts == 1 and "ConnectionError" in row.last_error


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
VALUES = (
    st.sampled_from(["contact.propertyChange", "hs_email_optout", "true", "false", "contact.creation"]) | JSON_SCALARS
)
FIELDS = st.sampled_from(
    [
        "subscriptionType",
        "eventType",
        "propertyName",
        "propertyValue",
        "objectId",
        "eventId",
        "portalId",
        "subscriptionId",
        "occurredAt",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.dictionaries(FIELDS, VALUES | st.lists(JSON_SCALARS, max_size=2), max_size=9), max_size=4)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)
def test_any_body_is_events_or_a_payload_error(data: object) -> None:
    """Whatever arrives, parsing answers contact events or a PayloadError (a 400)."""
    body = data.encode("latin-1") if isinstance(data, str) else json.dumps(data).encode()
    try:
        events = hubspot.parse_events(body, "application/json", received_at=NOW)
    except PayloadError:
        return
    for e in events:
        assert e.object_id and e.provider_event_id.count(":") >= 4
        json.dumps(e.to_json())


@pytest.mark.parametrize(
    ("source", "actor"),
    [
        ("FORM", Actor.PERSON),
        ("EMAIL", Actor.PERSON),
        ("CRM_UI", Actor.STAFF),
        ("CRM_UI_BULK_ACTION", Actor.STAFF),
        ("MERGE_CONTACTS", Actor.STAFF),
        ("IMPORT", Actor.STAFF),
        ("API", Actor.AUTOMATION),
        ("INTEGRATION", Actor.AUTOMATION),
        ("WORKFLOWS", Actor.AUTOMATION),
        ("AUTOMATION_PLATFORM", Actor.AUTOMATION),
        (None, Actor.AUTOMATION),
    ],
)
def test_change_source_tells_who_changed_the_opt_out(source: str | None, actor: Actor) -> None:
    assert hubspot.change_actor(source) is actor


@given(hostile.json_bodies(hostile.json_values(FIELDS | VALUES.filter(lambda v: isinstance(v, str)))))
def test_hostile_bodies_are_storable_contact_events_or_a_payload_error(body: bytes) -> None:
    """NUL, lone surrogates, numbers past the int-parsing limit, deep nesting, stray bytes:
    contact events whose stored form a database takes, or a PayloadError (a 400)."""
    try:
        events = hubspot.parse_events(body, "application/json", received_at=NOW)
    except PayloadError:
        return
    for e in events:
        assert not storable.REFUSED.search(json.dumps(e.to_json(), ensure_ascii=False) + e.object_id)

"""Mailchimp inbound: the URL secret and form-encoded parsing, on bytes (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.config import Secret, Topic
from adapters.errors import PayloadError, SignatureError
from adapters.events import Actor, Kind, Source
from adapters.providers import mailchimp
from tests.support import hostile

PAYLOADS = Path(__file__).with_name("payloads")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded"
TOPICS = (Topic("newsletter", mailchimp_list="abc123"),)
LISTS = ("abc123", "a6b5da1054")


def form(type_: str, **data: str) -> bytes:
    fields = {"type": type_, "fired_at": "2026-11-24 11:59:00", **{f"data[{k}]": v for k, v in data.items()}}
    return urlencode(fields).encode()


def parse(body: bytes, content_type: str = FORM, lists: tuple[str, ...] = LISTS) -> list:
    return mailchimp.parse_events(body, content_type, topics=TOPICS, lists=lists, received_at=NOW)


def test_secret_is_compared_and_required() -> None:
    mailchimp.verify_secret("s3cret-path", secret=Secret("s3cret-path"))
    for offered, secret in (("wrong", Secret("s3cret-path")), ("", Secret("s3cret-path")), ("anything", None)):
        with pytest.raises(SignatureError):
            mailchimp.verify_secret(offered, secret=secret)


def test_documented_sample_first_value_wins_and_plus_is_kept() -> None:
    [event] = parse((PAYLOADS / "mailchimp_unsubscribe.form").read_bytes())
    assert event.email == "api+unsub@mailchimp.com"
    assert (event.kind, event.scope, event.source) == (Kind.UNSUBSCRIBE, "global", Source.MAILCHIMP)
    assert event.reason == "manual"  # the repeated data[reason]=hard is ignored
    assert event.campaign == "cb398d21d2"
    assert event.occurred_at == datetime(2009, 3, 26, 21, 40, 57, tzinfo=UTC)
    assert event.provider_event_id.startswith("mc:")


def test_kinds_and_scopes() -> None:
    cases = [
        (
            form("unsubscribe", action="unsub", reason="manual", list_id="abc123", email="a@example.com"),
            Kind.UNSUBSCRIBE,
            "topic:newsletter",
        ),
        (
            form("unsubscribe", action="unsub", reason="abuse", list_id="abc123", email="a@example.com"),
            Kind.COMPLAINT,
            "topic:newsletter",
        ),
        (form("cleaned", reason="hard", list_id="a6b5da1054", email="a@example.com"), Kind.BOUNCE, "global"),
        (form("cleaned", reason="abuse", list_id="a6b5da1054", email="a@example.com"), Kind.COMPLAINT, "global"),
        (form("subscribe", list_id="abc123", email="a@example.com"), Kind.RESUBSCRIBE, "topic:newsletter"),
    ]
    for body, kind, scope in cases:
        [event] = parse(body)
        assert (event.kind, event.scope) == (kind, scope), body


def test_no_opt_out_in_other_events() -> None:
    for body in (
        form("profile", list_id="abc123", email="a@example.com"),
        form("upemail", list_id="abc123", old_email="a@example.com", new_email="b@example.com"),
        form("campaign", list_id="abc123", id="c1"),
        form("unsubscribe", action="delete", reason="manual", list_id="abc123", email="a@example.com"),
        form("subscribe", list_id="a6b5da1054", email="a@example.com"),  # unmapped list: maybe an import
        b"",  # Mailchimp's URL check
        b"fired_at=2026-11-24+11%3A59%3A00",  # no type
    ):
        assert parse(body) == [], body


def test_idempotency_key_is_stable_and_ignores_address_case() -> None:
    a = parse(form("unsubscribe", action="unsub", reason="manual", list_id="abc123", email="Ann@Example.com"))[0]
    b = parse(form("unsubscribe", action="unsub", reason="manual", list_id="abc123", email="ann@example.com"))[0]
    c = parse(form("cleaned", reason="hard", list_id="abc123", email="ann@example.com"))[0]
    assert a.provider_event_id == b.provider_event_id != c.provider_event_id


def test_unconfigured_list_is_refused_unless_no_list_is_configured() -> None:
    body = form("unsubscribe", action="unsub", reason="manual", list_id="zzz999", email="a@example.com")
    with pytest.raises(PayloadError, match="list_id"):
        parse(body)
    assert mailchimp.parse_events(body, FORM, topics=(), lists=(), received_at=NOW)[0].scope == "global"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (form("unsubscribe", list_id="abc123", email="a@example.com"), "application/json", "Content-Type"),
        (b"type=unsubscribe&data[email]=%FF%FE", FORM, "not a valid form"),
        (b"type=unsubscribe&\xff", FORM, "not a valid form"),
        (b"type=unsubscribe&&&=", FORM, "not a valid form"),
        (form("unsubscribe", list_id="abc123"), FORM, r"data\[email\]"),
        (form("unsubscribe", list_id="abc123", email="nobody"), FORM, r"data\[email\]"),
        (form("unsubscribe", email="a@example.com"), FORM, r"data\[list_id\]"),
        (
            form("unsubscribe", list_id="abc123", email="a@example.com").replace(b"11%3A59%3A00", b"soon"),
            FORM,
            "fired_at",
        ),
    ],
)
def test_malformed_bodies_raise_payload_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse(body, content_type)


KEYS = st.sampled_from(
    ["type", "fired_at", "data[list_id]", "data[email]", "data[reason]", "data[action]", "data[campaign_id]"]
)
VALUES = st.sampled_from(
    [
        "unsubscribe",
        "cleaned",
        "subscribe",
        "profile",
        "abuse",
        "hard",
        "delete",
        "abc123",
        "a6b5da1054",
        "a@example.com",
        "2026-11-24 11:59:00",
    ]
) | st.text(max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(KEYS, VALUES), max_size=8).map(lambda pairs: urlencode(pairs).encode()) | st.binary(max_size=200)
)
def test_any_body_is_at_most_one_event_or_a_payload_error(body: bytes) -> None:
    """Whatever arrives, parsing answers at most one event or a PayloadError (a 400)."""
    try:
        events = parse(body)
    except PayloadError:
        return
    assert len(events) <= 1 and all(e.provider_event_id.startswith("mc:") for e in events)


@pytest.mark.parametrize(
    ("ip_opt", "actor"),
    [
        ("198.51.100.7", Actor.PERSON),  # the member's own double opt-in confirmation
        ("2001:db8::7", Actor.PERSON),
        ("", Actor.STAFF),  # an admin add, an import, an API call
        ("unknown", Actor.STAFF),  # not an address Mailchimp would record
    ],
)
def test_a_subscribe_is_the_persons_only_with_their_confirmation_ip(ip_opt: str, actor: Actor) -> None:
    [event] = parse(form("subscribe", list_id="abc123", email="a@example.com", ip_opt=ip_opt))
    assert event.metadata["actor"] == actor.value


@given(hostile.form_bodies(st.tuples(KEYS | hostile.TEXT, VALUES | hostile.TEXT)))
def test_hostile_bodies_are_a_storable_event_or_a_payload_error(body: bytes) -> None:
    """NUL, lone surrogates (as ill-formed UTF-8), 5,000-digit numbers, stray bytes: an event
    whose text a database takes, or a PayloadError (a 400), never another exception."""
    try:
        events = parse(body)
    except PayloadError:
        return
    for e in events:
        assert hostile.storable_event(e)

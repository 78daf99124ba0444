"""SendGrid inbound: signature verification and parsing, on bytes (no server)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.config import Topic
from adapters.errors import ConfigError, PayloadError, SignatureError
from adapters.events import Kind, Source, Verification
from adapters.providers import sendgrid
from tests.support import hostile
from tests.support.sendgrid import VECTOR, make_key, sign

PAYLOADS = Path(__file__).with_name("payloads")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TOPICS = (Topic("newsletter", sendgrid_group=1234),)


def test_official_vector_verifies() -> None:
    sendgrid.verify_signature(VECTOR["payload"].encode(), VECTOR["headers"], public_key=VECTOR["public_key"], now=NOW)


@pytest.mark.parametrize("case", VECTOR["negative_cases"], ids=lambda c: c["what"])
def test_official_negative_cases_are_refused(case: dict[str, str]) -> None:
    headers = {
        sendgrid.SIGNATURE_HEADER: case.get("signature", VECTOR["signature"]),
        sendgrid.TIMESTAMP_HEADER: case.get("timestamp", VECTOR["timestamp"]),
    }
    with pytest.raises(SignatureError):
        sendgrid.verify_signature(
            case.get("payload", VECTOR["payload"]).encode(),
            headers,
            public_key=case.get("public_key", VECTOR["public_key"]),
            now=NOW,
        )


def test_generated_key_and_header_names_are_case_insensitive() -> None:
    private, public = make_key()
    body = (PAYLOADS / "sendgrid_mixed.json").read_bytes()
    headers = {k.lower(): v for k, v in sign(private, body, "1764000000").items()}
    sendgrid.verify_signature(body, headers, public_key=public, now=NOW)


def test_trailing_crlf_is_part_of_the_signed_bytes() -> None:
    private, public = make_key()
    body = (PAYLOADS / "sendgrid_mixed.json").read_bytes()
    assert body.endswith(b"\r\n")
    headers = sign(private, body, "1764000000")
    with pytest.raises(SignatureError):
        sendgrid.verify_signature(body.rstrip(b"\r\n"), headers, public_key=public, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {sendgrid.TIMESTAMP_HEADER: "1764000000"},
        {sendgrid.SIGNATURE_HEADER: "not base64!!", sendgrid.TIMESTAMP_HEADER: "1764000000"},
        {sendgrid.SIGNATURE_HEADER: base64.b64encode(b"not DER").decode(), sendgrid.TIMESTAMP_HEADER: "1764000000"},
        {sendgrid.SIGNATURE_HEADER: VECTOR["signature"], sendgrid.TIMESTAMP_HEADER: "17640000é"},
    ],
    ids=["none", "no-signature", "bad-base64", "bad-der", "non-ascii-timestamp"],
)
def test_every_malformed_signature_gets_the_same_error(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError, match=r"does not verify|missing"):
        sendgrid.verify_signature(b"[]", headers, public_key=VECTOR["public_key"], now=NOW)


def test_maximum_timestamp_age_both_edges() -> None:
    private, public = make_key()
    ts = int(NOW.timestamp()) - 600
    headers = sign(private, b"[]", str(ts))
    sendgrid.verify_signature(b"[]", headers, public_key=public, now=NOW, max_age_seconds=600)
    with pytest.raises(SignatureError, match="age"):
        sendgrid.verify_signature(b"[]", headers, public_key=public, now=NOW, max_age_seconds=599)
    sendgrid.verify_signature(b"[]", headers, public_key=public, now=NOW, max_age_seconds=0)  # 0: no limit
    for stamp in ("9" * 400, "\u00b2"):  # signed, but no usable time: refused, not a crash
        with pytest.raises(SignatureError):
            sendgrid.verify_signature(
                b"[]", sign(private, b"[]", stamp), public_key=public, now=NOW, max_age_seconds=600
            )


def test_a_bad_configured_key_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="webhook_public_key_env"):
        sendgrid.load_public_key("not a key")
    rsa_like = base64.b64encode(
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    with pytest.raises(ConfigError, match="P-256"):
        sendgrid.load_public_key(rsa_like)


def test_mixed_batch_keeps_only_opt_outs() -> None:
    events = sendgrid.parse_events(
        (PAYLOADS / "sendgrid_mixed.json").read_bytes(),
        "application/json; charset=utf-8",
        topics=TOPICS,
        received_at=NOW,
    )
    got = [(e.email, e.kind, e.scope, e.provider_event_id) for e in events]
    assert got == [
        ("Unsub@example.com", Kind.UNSUBSCRIBE, "global", "sg-unsub-1"),
        ("example@test.com", Kind.UNSUBSCRIBE, "topic:newsletter", "ahSCB7xYcXFb-hEaawsPRw=="),
        ("unmapped@example.com", Kind.UNSUBSCRIBE, "global", "sg-group-unmapped"),
        ("spam@example.com", Kind.COMPLAINT, "global", "sg-spam-1"),
        ("bounce@example.com", Kind.BOUNCE, "global", "sg-bounce-1"),
        ("resub@example.com", Kind.RESUBSCRIBE, "topic:newsletter", "sg-resub-1"),
    ]
    first = events[0]
    assert first.source is Source.SENDGRID and first.verification is Verification.SIGNATURE
    assert first.occurred_at == datetime.fromtimestamp(1513299569, tz=UTC)
    assert first.received_at == NOW
    assert events[4].reason == "550 5.1.1 no such user"
    assert events[1].metadata == {"asm_group_id": 1234} and events[0].metadata is None


def test_rejoining_an_unmapped_group_lifts_nothing() -> None:
    """Leaving a group no topic maps is a global opt-out; rejoining it must not undo one."""
    body = json.dumps(
        [
            {"event": "group_resubscribe", "email": "a@example.com", "sg_event_id": "r1", "asm_group_id": 999},
            {"event": "group_unsubscribe", "email": "a@example.com", "sg_event_id": "u1", "asm_group_id": "999"},
        ]
    ).encode()
    events = sendgrid.parse_events(body, "application/json", topics=TOPICS, received_at=NOW)
    assert [(e.kind, e.scope, e.provider_event_id) for e in events] == [(Kind.UNSUBSCRIBE, "global", "u1")]


def test_unknown_event_types_are_not_validated_further() -> None:
    body = json.dumps([{"event": "delivered"}, {"event": "brand_new_type", "email": 42}]).encode()
    assert sendgrid.parse_events(body, "application/json", topics=(), received_at=NOW) == []


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[{", "application/json", "not valid JSON"),
        (b'{"event": "unsubscribe"}', "application/json", "JSON array"),
        (b"[1, 2]", "application/json", r"events\[0\] must be a JSON object"),
        (b"[]", "text/plain", "Content-Type"),
        (b"\xff\xfe[]", "application/json", "not valid JSON"),
        (b'[{"email": "a@example.com"}]', "application/json", r"events\[0\]\.event"),
        (b'[{"event": "unsubscribe", "sg_event_id": "x"}]', "application/json", r"events\[0\]\.email"),
        (
            b'[{"event": "unsubscribe", "email": "not-an-address", "sg_event_id": "x"}]',
            "application/json",
            r"events\[0\]\.email",
        ),
        (b'[{"event": "spamreport", "email": "a@example.com"}]', "application/json", r"events\[0\]\.sg_event_id"),
        (
            b'[{"event": "spamreport", "email": "a@example.com", "sg_event_id": "' + b"x" * 201 + b'"}]',
            "application/json",
            r"events\[0\]\.sg_event_id: longer than 200",
        ),
        (
            b'[{"event": "group_unsubscribe", "email": "a@example.com", "sg_event_id": "x"}]',
            "application/json",
            "asm_group_id",
        ),
        (
            (
                '[{"event": "group_unsubscribe", "email": "a@example.com", "sg_event_id": "x", '
                '"asm_group_id": "\u00b2"}]'
            ).encode(),
            "application/json",
            "asm_group_id",
        ),
        (
            b'[{"event": "unsubscribe", "email": "a@example.com", "sg_event_id": "x", "timestamp": "yesterday"}]',
            "application/json",
            "timestamp",
        ),
    ],
)
def test_malformed_bodies_raise_payload_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        sendgrid.parse_events(body, content_type, topics=TOPICS, received_at=NOW)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
EVENT_VALUES = (
    st.sampled_from(["unsubscribe", "group_unsubscribe", "group_resubscribe", "spamreport", "bounce", "open"])
    | JSON_SCALARS
)
FIELDS = st.sampled_from(["email", "sg_event_id", "timestamp", "asm_group_id", "type", "reason", "event"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.dictionaries(FIELDS, EVENT_VALUES | st.lists(JSON_SCALARS, max_size=2), max_size=7), max_size=5)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)
def test_any_body_is_events_or_a_payload_error(data: object) -> None:
    """Whatever arrives, parsing answers events or a PayloadError (a 400), never anything else."""
    body = data.encode("latin-1") if isinstance(data, str) else json.dumps(data).encode()
    try:
        events = sendgrid.parse_events(body, "application/json", topics=TOPICS, received_at=NOW)
    except PayloadError:
        return
    assert all(e.source is Source.SENDGRID and e.provider_event_id for e in events)


@given(hostile.json_bodies(hostile.json_values(FIELDS | EVENT_VALUES.filter(lambda v: isinstance(v, str)))))
def test_hostile_bodies_are_storable_events_or_a_payload_error(body: bytes) -> None:
    """NUL, lone surrogates, numbers past the int-parsing limit, deep nesting, stray bytes:
    events whose text a database takes, or a PayloadError (a 400), never another exception."""
    try:
        events = sendgrid.parse_events(body, "application/json", topics=TOPICS, received_at=NOW)
    except PayloadError:
        return
    assert all(hostile.storable_event(e) for e in events)

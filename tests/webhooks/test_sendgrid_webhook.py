"""SendGrid's Event Webhook over real HTTP: signatures on the exact bytes, mixed batches,
topic mapping, and the shared webhook cases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import select

from adapters.errors import ConfigError
from adapters.providers import sendgrid
from adapters.store.models import Event
from adapters.store.queries import address_state
from tests.support.data import PAYLOADS
from tests.support.sendgrid import VECTOR, make_key, sign
from tests.support.webhook_cases import Delivery, Running, WebhookCases

PRIVATE_KEY, PUBLIC_KEY = make_key()
TIMESTAMP = "1764000000"


def signed(body: bytes, content_type: str = "application/json") -> Delivery:
    return Delivery(
        body,
        {"Content-Type": content_type, "User-Agent": "SendGrid Event API", **sign(PRIVATE_KEY, body, TIMESTAMP)},
        "/webhooks/sendgrid",
    )


class TestSendGridWebhook(WebhookCases):
    provider = "sendgrid"
    bad_signature_status = 403

    def config_data(self, fake_url: str) -> dict[str, Any]:
        return {
            "providers": {"sendgrid": {"enabled": True, "base_url": fake_url}},
            "topics": [{"name": "newsletter", "sendgrid_group": 1234}],
        }

    def env(self) -> dict[str, str]:
        return {"SENDGRID_API_KEY": "SG.test-key", "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC_KEY}

    def optouts(self, emails: Sequence[str]) -> list[Delivery]:
        events = [
            {"email": e, "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": f"sg-{e}"} for e in emails
        ]
        # As SendGrid sends it: CRLF after each event, and after the array.
        return [signed(("[" + ",\r\n".join(json.dumps(e) for e in events) + "]\r\n").encode())]

    def unsigned(self, delivery: Delivery) -> Delivery:
        return delivery.replace(headers={"Content-Type": "application/json"})

    def malformed(self) -> list[Delivery]:
        return [
            signed(b"[{"),
            signed(b'{"event": "unsubscribe"}'),
            signed(b"[]", content_type="text/plain"),
            signed(b'[{"event": "unsubscribe", "email": "nobody", "sg_event_id": "x"}]'),
            signed(
                b'[{"event": "unsubscribe", "email": "ok@example.com", "sg_event_id": "ok"}, '
                b'{"event": "spamreport", "email": "x@example.com"}]'
            ),
        ]

    def test_mixed_batch_counts_only_opt_outs_with_topic_mapping(self, running: Running) -> None:
        body = (PAYLOADS / "sendgrid_mixed.json").read_bytes()
        r = running.post(signed(body))
        assert r.status_code == 200 and r.json() == {"events": 6, "stored": 6, "duplicates": 0}
        with running.hub.sessions() as session:
            rows = {(e.email, e.kind, e.scope, e.verification) for e in session.scalars(select(Event))}
            assert address_state(session, "resub@example.com")["suppressed"] is False
        assert ("example@test.com", "unsubscribe", "topic:newsletter", "signature") in rows
        assert ("unmapped@example.com", "unsubscribe", "global", "signature") in rows
        assert not {e for e, *_ in rows} & {
            "processed@example.com",
            "open@example.com",
            "blocked@example.com",
            "dropped@example.com",
        }
        assert running.hub.metrics.events.labels("sendgrid", "unsubscribe")._value.get() == 3
        assert running.hub.metrics.events.labels("sendgrid", "complaint")._value.get() == 1

    def test_batch_without_opt_outs_touches_nothing(self, running: Running) -> None:
        r = running.post(signed(b'[{"event": "delivered", "email": "a@example.com", "sg_event_id": "d1"}]\r\n'))
        assert r.status_code == 200 and r.json()["events"] == 0
        assert running.count(Event) == 0

    def test_same_event_in_two_batches_is_stored_once(self, running: Running) -> None:
        one = {"email": "ann@example.com", "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": "dup"}
        other = {**one, "email": "bob@example.com", "sg_event_id": "other"}
        running.post(signed(json.dumps([one]).encode()))
        r = running.post(signed(json.dumps([one, other]).encode()))
        assert r.json() == {"events": 2, "stored": 1, "duplicates": 1}
        assert running.count(Event) == 2

    def test_expired_timestamp_is_refused_when_a_maximum_age_is_set(self, start) -> None:
        data = self.config_data("http://127.0.0.1:9")
        data["providers"]["sendgrid"]["max_timestamp_age_seconds"] = 3600
        running = start(data)
        running.hub.clock.now = datetime.fromtimestamp(int(TIMESTAMP) + 3600, tz=UTC)  # type: ignore[attr-defined]
        assert running.post(self.optouts(["ann@example.com"])[0]).status_code == 200
        running.hub.clock.advance(1)
        assert running.post(self.optouts(["bob@example.com"])[0]).status_code == 403
        assert running.count(Event) == 1

    def test_without_a_public_key_events_are_stored_unverified(self, start) -> None:
        data = self.config_data("http://127.0.0.1:9")
        data["providers"]["sendgrid"]["webhook_public_key_env"] = ""
        running = start(data)
        r = running.post(self.unsigned(self.optouts(["ann@example.com"])[0]))
        assert r.status_code == 200
        with running.hub.sessions() as session:
            assert session.scalars(select(Event.verification)).all() == ["none"]

    def test_overlong_numbers_and_deep_nesting_are_400(self, running: Running) -> None:
        base = {"email": "ann@example.com", "timestamp": 1764000000, "event": "group_unsubscribe", "sg_event_id": "a"}
        for group in ("9" * 5000, 10**25, "1" * 21):
            r = running.post(signed(json.dumps([{**base, "asm_group_id": group}]).encode()))
            assert r.status_code == 400 and "asm_group_id" in r.json()["error"], r.text
        r = running.post(signed(b"[" * 100_000 + b"]" * 100_000))
        assert (r.status_code, r.json()) == (400, {"error": "body is JSON nested too deeply"})
        assert running.count(Event) == 0

    def test_text_databases_refuse_spoils_no_event_of_the_batch(self, running: Running) -> None:
        """A NUL or half a surrogate pair in a reason becomes U+FFFD; the batch is stored whole."""
        events = [
            {"email": "ann@example.com", "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": "sg-a"},
            {"email": "bob@example.com", "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": "sg-b"},
        ]
        events[0]["reason"] = "nul\u0000 and \udc80 here"
        r = running.post(signed(json.dumps(events).encode()))
        assert r.status_code == 200 and r.json() == {"events": 2, "stored": 2, "duplicates": 0}
        with running.hub.sessions() as session:
            reasons = dict(session.execute(select(Event.email, Event.reason)).tuples().all())
        assert reasons == {"ann@example.com": "nul\ufffd and \ufffd here", "bob@example.com": None}


def test_official_vector_over_http(make_config, make_hub, serve_app) -> None:
    """SendGrid's own signed sample passes the real route (it holds no opt-out event)."""
    from webhooks import create_app

    hub = make_hub(
        make_config(
            {"providers": {"sendgrid": {"enabled": True}}},
            env={"SENDGRID_API_KEY": "SG.x", "SENDGRID_WEBHOOK_PUBLIC_KEY": VECTOR["public_key"]},
        )
    )
    server = serve_app(create_app(hub=hub))
    headers = {**VECTOR["headers"], "Content-Type": "application/json"}
    url = server.url + "/webhooks/sendgrid"
    r = requests.post(url, data=VECTOR["payload"].encode(), headers=headers, timeout=10)
    assert r.status_code == 400 and "JSON array" in r.json()["error"]  # verified, then parsed: an object, not an array
    bad = {**headers, sendgrid.SIGNATURE_HEADER: VECTOR["negative_cases"][0]["signature"]}
    assert requests.post(url, data=VECTOR["payload"].encode(), headers=bad, timeout=10).status_code == 403


def test_a_public_key_that_cannot_be_loaded_stops_start_up(make_config, make_hub) -> None:
    from webhooks import create_app

    env = {"SENDGRID_API_KEY": "SG.x", "SENDGRID_WEBHOOK_PUBLIC_KEY": "not a key"}
    hub = make_hub(make_config({"providers": {"sendgrid": {"enabled": True}}}, env=env))
    with pytest.raises(ConfigError, match="webhook_public_key_env"):
        create_app(hub=hub)
    create_app(hub=make_hub(make_config({}, env=env)))  # not enabled: the key is not read

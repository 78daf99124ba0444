"""Erasure (README "Erasure") on a real SQLite file and, in CI, real PostgreSQL: every trace of
the address leaves every table of the real schema, a keyed hash keeps it suppressed and never
re-added, and the other people's data stays."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from adapters.config import Config
from adapters.errors import ConfigError, ErasureError
from adapters.events import Kind, MailCategory, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.confirmations import queue_confirmation
from adapters.store.erased import PSEUDONYM_PREFIX
from adapters.store.erasure import erase_address
from adapters.store.models import ConsentConflict, Event, EventCount, Evidence, OutboxRow, PushConfirmation
from adapters.store.queries import address_state, check_addresses, export_suppressions
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from tests.support.personal_data import scanned_columns, traces
from tests.support.store import compact_everything, ev

ERASURE_KEY = "erasure-key-for-tests-0123456789"
PERSON = "Zq7Erasee@Example.ORG"
OTHER = "keep.me@example.com"


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, "OPTOUT_HUB_ERASURE_KEY": ERASURE_KEY}


@pytest.fixture
def erasing_hub(
    make_push_config: Callable[..., Config], fake_providers: FakeProviders, make_hub: Callable[[Config], Hub]
) -> Hub:
    config = make_push_config(fake_providers, providers=("sendgrid",), confirmations={"enabled": True}, compliance={})
    return make_hub(config)


def _evidence(
    channel: str, source: str, content: bytes, meta: dict[str, Any] | None = None, state: str = "done"
) -> Evidence:
    return Evidence(
        channel=channel, source=source, received_at=Clock()(), content=content, content_type="", meta=meta, state=state
    )


def _seed(hub: Hub) -> None:
    """The person's history through every kind of record the store keeps, beside another's."""
    now = hub.clock()
    with hub.sessions.begin() as session:
        issue_tokens(session, hub.signer, hub.config, [RecipientRequest(PERSON, "newsletter", "spring")], now=now)
        issue_tokens(session, hub.signer, hub.config, [RecipientRequest(OTHER, None, "spring")], now=now)
        mail = _evidence(
            "smtp",
            "smtp",
            f"From: Zq Erasee <{PERSON}>\r\nSubject: stop\r\n\r\nPlease STOP. zq7erasee\r\n".encode(),
            {"mail_from": PERSON.lower(), "peer": "192.0.2.7"},
        )
        batch = _evidence(
            "webhook",
            "sendgrid",
            json.dumps(
                [
                    {"email": PERSON, "event": "unsubscribe", "sg_event_id": "sg-1"},
                    {"email": OTHER, "event": "unsubscribe", "sg_event_id": "sg-2"},
                ]
            ).encode(),
            {"remote_addr": "198.51.100.1"},
        )
        form = _evidence("webhook", "mailchimp", b"type=unsubscribe&data%5Bemail%5D=zq7erasee%40example.org")
        review = _evidence(
            "smtp", "smtp", f"From: {OTHER}\r\n\r\nplease take my colleague {PERSON} off\r\n".encode(), state="review"
        )
        session.add_all([mail, batch, form, review])
        session.flush()
        events = [
            ev(
                PERSON,
                source=Source.SMTP,
                provider_event_id=f"smtp:{mail.id}",
                evidence_id=mail.id,
                reason="zq7erasee moved away",
            ),
            ev(
                PERSON,
                source=Source.SENDGRID,
                provider_event_id="sg-1",
                evidence_id=batch.id,
                verification=Verification.SIGNATURE,
            ),
            ev(OTHER, source=Source.SENDGRID, provider_event_id="sg-2", evidence_id=batch.id, reason="too many mails"),
            ev(PERSON, Kind.COMPLAINT, Source.MAILCHIMP, provider_event_id="mc-1", evidence_id=form.id),
            ev(PERSON, source=Source.IMPORT, provider_event_id="imp-1", metadata={"note": "zq7erasee vip"}),
            ev(PERSON, scope="topic:newsletter", source=Source.ONECLICK, campaign="spring", reason="I am Zq7Erasee"),
        ]
        hub_policy = hub.policy
        from adapters.store.record import record_events

        record_events(session, events, hub_policy, now=now)
        queue_confirmation(session, hub.config, events[-1], auto_submitted=False, now=now)


def _drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()


def test_erasure_leaves_no_trace_in_any_table_and_keeps_the_facts(
    erasing_hub: Hub, fake_providers: FakeProviders
) -> None:
    hub = erasing_hub
    _seed(hub)
    assert traces(hub.engine, PERSON)  # the scan finds what is there
    columns = scanned_columns(hub.engine)
    assert {"content", "meta", "result"} <= set(columns["evidence"]) and "reason" in columns["events"]
    with hub.sessions() as session:
        counted = session.scalar(select(func.sum(EventCount.n)))
    with pytest.raises(ErasureError, match="still pending"), hub.sessions.begin() as session:
        erase_address(session, PERSON, erasure_key=hub.policy.erasure_key, now=hub.clock())
    _drain(hub)  # SendGrid now holds the opt-outs
    assert PERSON.lower() in fake_providers.sendgrid.global_suppressions

    with hub.sessions.begin() as session:
        result = erase_address(session, PERSON, erasure_key=hub.policy.erasure_key, now=hub.clock())
    assert not result.already_erased
    assert result.removed["events"] == 5 and result.removed["evidence_deleted"] == 3
    assert result.removed["evidence_redacted"] == 1 and result.removed["recipients"] == 1
    assert result.removed["confirmations"] == 1 and result.removed["outbox_settled"] >= 1
    assert traces(hub.engine, PERSON) == []

    with hub.sessions() as session:
        alias = PSEUDONYM_PREFIX + result.address_hash
        kept = session.scalars(select(Event).where(Event.email_key == alias).order_by(Event.id)).all()
        assert [(e.kind, e.scope, e.source) for e in kept] == [
            ("unsubscribe", "global", "smtp"),
            ("unsubscribe", "global", "sendgrid"),
            ("complaint", "global", "mailchimp"),
            ("unsubscribe", "global", "import"),
            ("unsubscribe", "topic:newsletter", "oneclick"),
        ]
        assert all(e.reason is None and e.meta is None and e.evidence_id is None for e in kept)
        assert session.scalar(select(func.sum(EventCount.n))) == counted  # counts stay, reasons go
        batch = session.scalars(select(Evidence).where(Evidence.source == "sendgrid")).one()
        assert [i["email"] for i in json.loads(batch.content)] == [OTHER] and batch.meta["redacted"] == "erasure"
        other = address_state(session, OTHER, policy=hub.policy)
        assert other["suppressed"] and other["events"][0]["reason"] == "too many mails"
        state = address_state(session, PERSON, policy=hub.policy)
        assert state["suppressed"] and state.get("erased") and state["scopes"] == ["global", "topic:newsletter"]
        assert len(state["events"]) == 5
        assert check_addresses(session, [PERSON, OTHER], policy=hub.policy).suppressed == [PERSON, OTHER]
        assert [r["email"] for r in export_suppressions(session)] == [OTHER]  # a pseudonym is no address
        assert check_addresses(
            session, [PERSON.upper(), OTHER], category=MailCategory.TRANSACTIONAL, policy=hub.policy
        ).suppressed == [PERSON.upper()]  # its complaint is kept as a fact
    calls = len(fake_providers.sendgrid.calls)
    _drain(hub)
    assert len(fake_providers.sendgrid.calls) == calls  # erasure pushes nothing: SendGrid keeps the opt-out

    with hub.sessions.begin() as session:  # idempotent
        again = erase_address(session, PERSON.lower(), erasure_key=hub.policy.erasure_key, now=hub.clock())
    assert again.already_erased and again.address_hash == result.address_hash and not any(again.removed.values())


def test_erasure_clears_the_providers_answer_kept_with_a_compacted_push(erasing_hub: Hub) -> None:
    hub = erasing_hub
    hub.record([ev(PERSON)])
    _drain(hub)
    with hub.sessions.begin() as session:  # a provider's answer may name the address
        session.execute(update(OutboxRow).values(last_error=f"{PERSON.lower()} is already unsubscribed"))
    assert compact_everything(hub) == 1
    assert ("push_confirmations", "last_error") in {t[:2] for t in traces(hub.engine, PERSON)}

    with hub.sessions.begin() as session:
        result = erase_address(session, PERSON, erasure_key=hub.policy.erasure_key, now=hub.clock())
    assert result.removed["outbox_settled"] == 1
    assert traces(hub.engine, PERSON) == []
    with hub.sessions() as session:
        kept = session.scalars(select(PushConfirmation)).one()
        assert (kept.provider, kept.action, kept.scope, kept.last_error) == ("sendgrid", "unsubscribe", "global", None)


def test_an_erased_address_is_never_re_added(erasing_hub: Hub, fake_providers: FakeProviders, clock: Clock) -> None:
    hub = erasing_hub
    hub.record([ev(PERSON, source=Source.SMTP, reason="stop it")])
    _drain(hub)
    with hub.sessions.begin() as session:
        result = erase_address(session, PERSON, erasure_key=hub.policy.erasure_key, now=hub.clock())
    clock.advance(600)
    # the person's own resubscribe, an admin's, and a provider's: none lifts anything
    admin = OptOutEvent(
        email=PERSON, kind=Kind.RESUBSCRIBE, source=Source.API, reason="asked by phone", metadata={"admin": "ops"}
    )
    prefs = ev(PERSON, Kind.RESUBSCRIBE, Source.PREFERENCES, verification=Verification.TOKEN)
    provider = ev(
        PERSON,
        Kind.RESUBSCRIBE,
        Source.SENDGRID,
        scope="topic:newsletter",
        provider_event_id="sg-re",
        verification=Verification.SIGNATURE,
        metadata={"actor": "person"},
    )
    recorded = hub.record([admin, prefs, provider])
    assert recorded.new == 3 and recorded.changed == 0
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsentConflict)) == 3
        assert {c.opt_out_source for c in session.scalars(select(ConsentConflict))} == {"erasure"}
        assert check_addresses(session, [PERSON], policy=hub.policy).suppressed == [PERSON]
        pushed = session.scalars(select(OutboxRow.action).where(OutboxRow.state == "pending")).all()
    assert pushed == ["unsubscribe"]  # SendGrid re-added the person to the group: put back, never undone
    _drain(hub)
    assert not fake_providers.sendgrid.calls_to("DELETE")
    # a new opt-out is the person writing again: recorded as new, the old history stays erased
    hub.record([ev(PERSON, source=Source.SMTP, provider_event_id="smtp:again", reason="again")])
    with hub.sessions() as session:
        state = address_state(session, PERSON, policy=hub.policy)
        alias = PSEUDONYM_PREFIX + result.address_hash
        old = session.scalars(select(Event).where(Event.email_key == alias)).all()
    assert state["suppressed"] and state.get("erased")
    assert [e.reason for e in old] == [None]
    assert [e["reason"] for e in state["events"] if e["reason"]] == ["asked by phone", "again"]


def test_erasure_needs_its_key_and_keeps_it(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], test_env: dict[str, str]
) -> None:
    keyless = make_hub(make_config(env={"OPTOUT_HUB_ERASURE_KEY": ""}))
    hub = make_hub(make_config())
    hub.record([ev(PERSON)])
    with pytest.raises(ErasureError, match=r"\[security\] erasure_key_env"), keyless.sessions.begin() as session:
        erase_address(session, PERSON, erasure_key=keyless.policy.erasure_key, now=hub.clock())
    with hub.sessions.begin() as session:
        erase_address(session, PERSON, erasure_key=hub.policy.erasure_key, now=hub.clock())
    for env in ({"OPTOUT_HUB_ERASURE_KEY": ""}, {"OPTOUT_HUB_ERASURE_KEY": "another-key-0123456789abcdef"}):
        with pytest.raises(ConfigError, match=r"security\.erasure_key_env"):
            make_hub(make_config(env=env))
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        make_config(env={"OPTOUT_HUB_ERASURE_KEY": "short"})


def test_erasure_waits_for_a_message_naming_the_address_to_be_classified(hub: Hub) -> None:
    hub.record([ev(PERSON, reason="by phone")])
    with hub.sessions.begin() as session:
        session.add(_evidence("smtp", "smtp", f"From: {PERSON}\r\n\r\nstop\r\n".encode(), state="pending"))
    with pytest.raises(ErasureError, match="waits for classification"), hub.sessions.begin() as session:
        erase_address(session, PERSON, erasure_key=ERASURE_KEY.encode(), now=hub.clock())
    with hub.sessions() as session:  # nothing was erased
        assert address_state(session, PERSON)["events"][0]["reason"] == "by phone"

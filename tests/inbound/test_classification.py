"""The classification thread: stored messages classified after the answer and recorded with
their events, bounce policy, complaints, recovery of pending rows at start (and only once),
confirmation mail for a person's reply but not for a mail client's request; a row the store
refuses holds back no other; a batch stores all its events or none."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters.config import Config, parse_config
from adapters.errors import StoreError
from adapters.events import utcnow
from adapters.hub import Hub
from adapters.store.models import Event, Evidence
from adapters.store.queries import address_state
from adapters.worker.confirmations import send_due_confirmations
from inbound.classification import events_for, process_batch, process_evidence
from inbound.evidence import EvidenceWriter, Received
from inbound.listener import SMTPComponent
from tests.support import hostile
from tests.support.environment import LONG_FUZZ, TEST_SECRET
from tests.support.mail import DOMAIN, REPLIES, corpus_message, message
from tests.support.outage import events_refused
from tests.support.pg_cluster import private_cluster
from tests.support.servers import Sink, delivered
from tests.support.smtp_client import send, wait_classified, wait_counted


def test_stop_reply_is_classified_after_the_answer(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    evidence_id = send(component, message("Please unsubscribe me.", subject="Re: news"))
    row = wait_classified(component.hub, evidence_id)
    assert row.state == "done"
    assert row.result["classification"] == "unsubscribe"
    assert row.result["address"] == "jane@example.org"
    assert row.processed_at is not None
    with component.hub.sessions() as session:
        state = address_state(session, "JANE@example.org")
        assert state["suppressed"] and state["scopes"] == ["global"]
        (event,) = state["events"]
        assert (event["source"], event["kind"], event["provider_event_id"], event["evidence_id"]) == (
            "smtp",
            "unsubscribe",
            f"smtp:{evidence_id}",
            evidence_id,
        )
    wait_counted(
        component.hub,
        'optout_smtp_messages_total{classification="unsubscribe"} 1.0',
        'optout_events_total{kind="unsubscribe",source="smtp"} 1.0',
    )


def test_hard_bounces_suppress_only_when_the_policy_says_so(start_smtp: Callable[..., SMTPComponent]) -> None:
    raw = corpus_message("bounce/sisimai_lhost-postfix-01.eml")
    off = start_smtp()
    row = wait_classified(off.hub, send(off, raw, mail_from=""))
    assert row.result["classification"] == "bounce" and row.result["address"] == "kijitora@example.org"
    with off.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
    off.stop()


def test_hard_bounce_suppression_switched_on(start_smtp: Callable[..., SMTPComponent]) -> None:
    on = start_smtp(inbound={"suppress_hard_bounces": True})
    row = wait_classified(on.hub, send(on, corpus_message("bounce/sisimai_lhost-postfix-01.eml"), mail_from=""))
    assert row.result["classification"] == "bounce"
    with on.hub.sessions() as session:
        assert address_state(session, "kijitora@example.org")["suppressed"]


def test_complaint_is_recorded_as_a_complaint(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    row = wait_classified(
        component.hub,
        send(component, corpus_message("complaint/phpbounce_fbl-yahoo.eml"), mail_from="feedback@arf.mail.yahoo.com"),
    )
    assert row.result["classification"] == "complaint"
    with component.hub.sessions() as session:
        (event,) = address_state(session, "someuser@yahoo.com")["events"]
        assert event["kind"] == "complaint"


def test_pending_rows_are_classified_at_start_and_only_once(
    start_smtp: Callable[..., SMTPComponent], make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> None:
    hub = make_hub(make_config({"smtp": {"port": 0}}))
    received = Received(
        message("STOP", subject="Re: x"), "jane@example.org", (REPLIES,), "127.0.0.1:1", "client", utcnow()
    )
    writer = EvidenceWriter(hub)
    evidence_id = writer.store(received)
    writer.close()
    start_smtp(hub=hub)
    row = wait_classified(hub, evidence_id)
    assert row.result["classification"] == "unsubscribe"
    # A crash after the events were stored but before... is impossible (one transaction); a
    # second classification of the same row (two processes recovering it) stores nothing new.
    with hub.sessions.begin() as session:
        session.get(Evidence, evidence_id).state = "pending"
    assert process_evidence(hub, evidence_id) is not None
    assert process_evidence(hub, evidence_id) is None
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1


def test_a_stop_reply_gets_one_confirmation_a_client_request_none(
    start_smtp: Callable[..., SMTPComponent],
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    sink: tuple[Sink, int],
) -> None:
    handler, port = sink
    hub = make_hub(make_config({"smtp": {"port": 0}, "confirmations": {"enabled": True, "smtp_port": port}}))
    component = start_smtp(hub=hub)
    wait_classified(hub, send(component, message("STOP", subject="Re: news")))
    assert handler.messages == []  # queued with the opt-out; the worker mails it
    assert send_due_confirmations(hub) == 1
    (mail,) = delivered(handler, 1)
    assert mail["To"] == "jane@example.org" and mail["Auto-Submitted"] == "auto-generated"
    assert "/preferences/" in mail.get_content()
    # the same person again the same day: no second mail
    wait_classified(hub, send(component, message("unsubscribe", subject="Re: news")))
    # a mail client's List-Unsubscribe message (Apple Mail) is honoured, not answered
    apple = corpus_message("unsubscribe_mailto/sisimai_arf-26_apple_mail.eml")
    row = wait_classified(hub, send(component, apple, mail_from="example@icloud.com"))
    assert row.result["classification"] == "unsubscribe" and row.result["automatic"] is True
    assert send_due_confirmations(hub) == 0
    assert len(delivered(handler, 1)) == 1


def test_a_row_the_store_refuses_holds_back_no_other(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp(inbound={"retry_max_seconds": 1.0})
    hub = component.hub
    senders = ["poison@example.org"] + [f"fine{n}@example.org" for n in range(3)]
    with events_refused(hub.engine, email="poison@example.org"):
        ids = [send(component, message("STOP", sender=s), mail_from=s) for s in senders]
        for evidence_id in ids[1:]:  # retried row by row after their batch failed
            assert wait_classified(hub, evidence_id, timeout=15).state == "done"
        time.sleep(1.5)
        with hub.sessions() as session:
            assert session.get_one(Evidence, ids[0]).state == "pending"
    assert wait_classified(hub, ids[0], timeout=15).state == "done"  # retried until the store takes it
    with hub.sessions() as session:
        assert all(address_state(session, s)["suppressed"] for s in senders)


def test_mail_stored_before_the_database_went_down_is_classified_as_soon_as_it_is_back() -> None:
    """Not at the end of the back-off the outage grew (here 16 s): the first message classified
    after the outage proves the store answers again, and the backlog is swept at once."""
    with private_cluster() as cluster:
        config = parse_config(
            {
                "database": {"url": cluster.url},
                "smtp": {"port": 0, "domains": [DOMAIN]},
                "inbound": {"retry_max_seconds": 60.0},
                "security": {"token_secret_env": "OPTOUT_HUB_SECRET"},
            },
            {"OPTOUT_HUB_SECRET": TEST_SECRET},
        )
        hub = Hub.open(config, upgrade=True)
        component: SMTPComponent | None = None
        try:
            received = Received(
                message("STOP", subject="Re: x", sender="before@example.org"),
                "before@example.org",
                (REPLIES,),
                "127.0.0.1:1",
                "client",
                utcnow(),
            )
            writer = EvidenceWriter(hub)
            before = writer.store(received)  # answered 250; the process died before classifying it
            writer.close()
            cluster.stop()
            component = SMTPComponent(hub, port=0, dkim_dns=None)
            component.start()  # its sweep fails at 0, 1, 3, 7 and 15 s: the next at 31 s
            time.sleep(16)
            cluster.start()
            after = send(component, message("STOP", sender="after@example.org"), mail_from="after@example.org")
            assert wait_classified(hub, after, timeout=5).state == "done"
            assert wait_classified(hub, before, timeout=5).state == "done"
            with hub.sessions() as session:
                assert address_state(session, "before@example.org")["suppressed"]
        finally:
            if component is not None:
                component.stop()
            hub.close()


SENDERS = st.from_regex(r"[a-z]{1,8}\.[a-z0-9]{1,6}@example\.org", fullmatch=True)


@settings(
    max_examples=300 if LONG_FUZZ else 8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(SENDERS, min_size=1, max_size=4, unique=True),
    st.lists(hostile.messages(), max_size=3),
    st.booleans(),
)
def test_a_batch_stores_all_its_events_or_none(
    hub: Hub, senders: list[str], others: list[bytes], refused: bool
) -> None:
    """A batch of stop replies and hostile mail is classified in one transaction: when the store
    refuses one of its events (the first sender's), no event of the batch is stored and every
    row stays pending, to be retried; otherwise every row is classified and every opt-out stored."""
    writer = EvidenceWriter(hub)
    received = [(message("STOP", subject="Re: news", sender=s), s) for s in senders]
    received += [(raw, "x@example.net") for raw in others]
    ids = [writer.store(Received(raw, sender, (REPLIES,), "127.0.0.1:1", None, utcnow())) for raw, sender in received]
    writer.close()
    if refused:
        with events_refused(hub.engine, email=senders[0]), pytest.raises(StoreError):
            process_batch(hub, ids)
    else:
        verdicts = process_batch(hub, ids)
        assert set(verdicts) == set(ids)
    with hub.sessions() as session:
        rows = session.scalars(select(Evidence).where(Evidence.id.in_(ids))).all()
        stored = session.scalar(select(func.count()).select_from(Event).where(Event.evidence_id.in_(ids)))
        if refused:
            assert stored == 0 and {row.state for row in rows} == {"pending"}
        else:
            assert "pending" not in {row.state for row in rows}
            assert stored == sum(len(events_for(hub, verdicts[row.id], row)) for row in rows) >= len(senders)
            assert all(address_state(session, s)["suppressed"] for s in senders)

"""The listener in-process on a free port, through smtplib and raw sockets: relay refusal,
SIZE and 552, durable write before 250 and 451 when it fails, the connection limit and idle
time-outs, classification after the answer, recovery of pending rows, idempotency, metrics."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.config import Config
from adapters.errors import OptOutHubError, StoreError
from adapters.events import utcnow
from adapters.hub import Hub
from adapters.store.models import Event, Evidence
from adapters.store.queries import address_state
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.worker.confirmations import send_due_confirmations
from inbound.listener import SMTPComponent
from inbound.processing import EvidenceWriter, Received, process_evidence
from tests.support.mail import DOMAIN, REPLIES, corpus_message, message
from tests.support.servers import Sink, delivered

STORED = re.compile(rb"stored as (\d+)")


@pytest.fixture
def start_smtp(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> Iterator[Callable[..., SMTPComponent]]:
    started: list[SMTPComponent] = []

    def start(
        smtp: dict[str, Any] | None = None,
        inbound: dict[str, Any] | None = None,
        topics: list[dict[str, Any]] | None = None,
        hub: Hub | None = None,
    ) -> SMTPComponent:
        if hub is None:
            data: dict[str, Any] = {"smtp": {"port": 0, **(smtp or {})}}
            if inbound:
                data["inbound"] = inbound
            if topics:
                data["topics"] = topics
            hub = make_hub(make_config(data))
        component = SMTPComponent(hub, port=0, dkim_dns=None)
        component.start()
        started.append(component)
        return component

    yield start
    for component in started:
        component.stop()


def client(component: SMTPComponent) -> smtplib.SMTP:
    return smtplib.SMTP(*component.address, timeout=10)


def send(component: SMTPComponent, raw: bytes, rcpt: str = REPLIES, mail_from: str = "jane@example.org") -> int:
    with client(component) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail(mail_from)[0] == 250
        assert smtp.rcpt(rcpt)[0] == 250
        code, reply = smtp.data(raw)
        assert code == 250, reply
    match = STORED.search(reply)
    assert match
    return int(match.group(1))


def data_reply(component: SMTPComponent, raw: bytes) -> tuple[int, bytes]:
    """The answer to DATA for one message from jane@example.org to the reply address."""
    with client(component) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail("jane@example.org")
        smtp.rcpt(REPLIES)
        return smtp.data(raw)


def wait_classified(hub: Hub, evidence_id: int, timeout: float = 10.0) -> Evidence:
    deadline = time.monotonic() + timeout
    while True:
        with hub.sessions() as session:
            row = session.get(Evidence, evidence_id)
            if row is not None and row.state != "pending":
                return row
        if time.monotonic() > deadline:
            raise AssertionError(f"evidence {evidence_id} still pending")
        time.sleep(0.02)


def test_relay_is_refused_and_size_is_advertised(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_message_bytes": 4096})
    with client(component) as smtp:
        code, features = smtp.ehlo("client.example.org")
        assert code == 250 and b"SIZE 4096" in features
        smtp.mail("spammer@example.net")
        code, reply = smtp.rcpt("victim@elsewhere.example")
        assert code == 550 and reply.startswith(b"5.1.1")
        code, _ = smtp.rcpt(f"Replies@{DOMAIN.upper()}")
        assert code == 250


def test_a_taken_port_is_a_clear_error(start_smtp: Callable[..., SMTPComponent]) -> None:
    first = start_smtp()
    second = SMTPComponent(first.hub, port=first.port, dkim_dns=None)
    with pytest.raises(OptOutHubError, match=r"SMTP cannot listen on 127\.0\.0\.1:\d+"):
        second.start()


def test_oversized_message_gets_552(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_message_bytes": 2000})
    big = message("x" * 5000)
    with client(component) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE= announced in MAIL FROM
            smtp.sendmail("jane@example.org", [REPLIES], big)
        assert refused.value.smtp_code == 552
    with client(component) as smtp:  # a client that does not announce the size
        smtp.ehlo("client.example.org")
        smtp.mail("jane@example.org")
        smtp.rcpt(REPLIES)
        code, _ = smtp.data(big)
        assert code == 552
    with component.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 0


def test_message_is_durable_before_250(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    component.classifier.delay = 30  # nothing gets classified while we look
    raw = message("STOP", subject="Re: news")
    evidence_id = send(component, raw, mail_from="jane@example.org")
    with component.hub.sessions() as session:
        row = session.get(Evidence, evidence_id)
        assert row is not None
        assert (row.channel, row.source, row.state, row.content_type) == ("smtp", "smtp", "pending", "message/rfc822")
        assert row.content == raw
        assert row.meta["mail_from"] == "jane@example.org"
        assert row.meta["rcpt_tos"] == [REPLIES]
        assert row.meta["helo"] == "client.example.org"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", row.meta["peer"])


def test_451_when_the_message_cannot_be_stored(
    start_smtp: Callable[..., SMTPComponent], monkeypatch: pytest.MonkeyPatch
) -> None:
    component = start_smtp()

    async def broken(received: Received) -> int:
        raise StoreError("database is down")

    monkeypatch.setattr(component.writer, "store_async", broken)
    code, reply = data_reply(component, message("STOP"))
    assert code == 451 and reply.startswith(b"4.3.0")


def test_451_when_the_database_refuses_the_write_then_recovery(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    component.classifier.delay = 30
    assert send(component, message("STOP")) >= 1  # the writer's connection is open and idle
    with component.hub.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE evidence RENAME TO evidence_away")
    try:
        code, reply = data_reply(component, message("STOP"))
        assert code == 451 and reply.startswith(b"4.3.0")
    finally:
        with component.hub.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE evidence_away RENAME TO evidence")
    assert send(component, message("STOP")) >= 2  # the sender's retry is accepted, on a fresh connection


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
    metrics = component.hub.metrics.render().decode()
    assert 'optout_smtp_messages_total{classification="unsubscribe"} 1.0' in metrics
    assert 'optout_events_total{kind="unsubscribe",source="smtp"} 1.0' in metrics


def test_tokenized_mailto_opts_out_the_tokens_recipient_at_its_topic(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp(topics=[{"name": "newsletter"}])
    hub = component.hub
    with hub.sessions.begin() as session:
        (issued,) = issue_tokens(
            session, hub.signer, hub.config, [RecipientRequest("Ann@Example.com", "newsletter", "c-42")], now=utcnow()
        )
    mailto = re.search(r"mailto:([^>]+)", issued.list_unsubscribe).group(1)  # type: ignore[union-attr]
    raw = message(
        "This message was automatically generated by Gmail.",
        subject="Unsubscribe",
        sender="forwardee@example.net",
        to=mailto,
    )
    evidence_id = send(component, raw, rcpt=mailto.upper(), mail_from="forwardee@example.net")
    row = wait_classified(hub, evidence_id)
    assert (
        row.result["verification"] == "token"
        and row.result["scope"] == "topic:newsletter"
        and row.result["campaign"] == "c-42"
    )
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["scopes"] == ["topic:newsletter"]
        assert not address_state(session, "forwardee@example.net")["suppressed"]
        (event,) = session.scalars(select(Event)).all()
        assert (event.verification, event.campaign) == ("token", "c-42")


def test_forged_token_goes_to_the_review_queue(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    rcpt = f"unsub-{'a' * 28}@{DOMAIN}"
    evidence_id = send(component, message("unsubscribe", subject="unsubscribe"), rcpt=rcpt)
    row = wait_classified(component.hub, evidence_id)
    assert row.state == "review"
    assert row.result["classification"] == "review" and row.result["address"] == "jane@example.org"
    with component.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_malformed_message_is_stored_and_the_listener_keeps_working(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    garbage = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\xff\xfe\x00 unsubscribe \x80\r\n" + bytes(range(32, 256))
    evidence_id = send(component, garbage)
    row = wait_classified(component.hub, evidence_id)
    assert row.result["classification"] in ("other", "review")
    assert send(component, message("hello")) == evidence_id + 1


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


def test_group_commit_under_concurrency(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    ids: list[int] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            ids.append(send(component, message(f"hello {n}", subject=f"note {n}")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 20
    with component.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 20


def _greeting(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_connection_limit_answers_421(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_connections": 3})
    idle = [socket.create_connection(component.address) for _ in range(3)]
    try:
        for sock in idle:
            assert _greeting(sock).startswith(b"220")
        extra = socket.create_connection(component.address)
        assert _greeting(extra).startswith(b"421")
        extra.close()
        idle.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the close asynchronously
            with socket.create_connection(component.address) as again:
                if _greeting(again).startswith(b"220"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in idle:
            sock.close()


def test_idle_connections_time_out_and_do_not_starve_a_client(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_connections": 6, "timeout_seconds": 1})
    idle = [socket.create_connection(component.address) for _ in range(5)]
    try:
        for sock in idle:
            assert _greeting(sock).startswith(b"220")
        send(component, message("STOP"))  # the sixth slot still serves a normal client
        time.sleep(1.6)
        for sock in idle:
            sock.settimeout(3)
            assert sock.recv(1024) == b""  # closed by the server
        for _ in range(5):  # all slots are free again
            send(component, message("hello"))
    finally:
        for sock in idle:
            sock.close()


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


def test_accepted_connections_have_nagle_off(start_smtp: Callable[..., SMTPComponent]) -> None:
    """Short SMTP sessions stall on Nagle + delayed ACK unless TCP_NODELAY is set (asyncio
    sets it only when the listening socket says IPPROTO_TCP)."""
    component = start_smtp()
    with client(component) as smtp:
        smtp.ehlo("client.example.org")
        session = component.controller.smtpd  # type: ignore[union-attr]  # the session just accepted
        accepted = session.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1

"""The listener in-process on a free port, through smtplib and raw sockets: relay refusal,
SIZE and 552 (oversized mail to a tokenized address kept truncated and honoured), the
connection limits (global, per peer, eviction of idle connections) and idle time-outs (shorter
under stress; a trickled message cut off by its deadline), over-long lines, Nagle off, a
malformed message stored; tokenized unsubscribe addresses end to end, on an ASCII and on an
international domain."""

from __future__ import annotations

import logging
import random
import re
import smtplib
import socket
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
from sqlalchemy import func, select

from adapters.errors import OptOutHubError
from adapters.events import utcnow
from adapters.store.models import Event, Evidence
from adapters.store.queries import address_state
from adapters.store.recipients import RecipientRequest, issue_tokens
from inbound.listener import SMTPComponent
from tests.support.mail import DOMAIN, REPLIES, message
from tests.support.smtp_client import client, send, wait_classified


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
        assert {b"MAIL", b"RCPT", b"DATA"} <= set(smtp.help().split())


def test_a_taken_port_is_a_clear_error(start_smtp: Callable[..., SMTPComponent]) -> None:
    first = start_smtp()
    second = SMTPComponent(first.hub, port=first.port, dkim_dns=None)
    with pytest.raises(OptOutHubError, match=r"SMTP cannot listen on 127\.0\.0\.1:\d+"):
        second.start()


def test_oversized_message_gets_552(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_message_bytes": 2000})
    big = message("x" * 5000)
    with client(component) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:  # SIZE= announced in MAIL FROM
            smtp.sendmail("jane@example.org", [REPLIES], big)
        assert refused.value.recipients[REPLIES][0] == 552
    with client(component) as smtp:  # a client that does not announce the size
        smtp.ehlo("client.example.org")
        smtp.mail("jane@example.org")
        smtp.rcpt(REPLIES)
        code, reply = smtp.data(big)
        assert code == 552 and reply.startswith(b"5.3.4")
    with component.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 0


def _image_heavy_reply(to: str, sender: str) -> bytes:
    """A 2 MB reply: a short request, then a quoted newsletter with its images."""
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = sender, to, "Re: Our spring newsletter"
    reply.set_content("Please unsubscribe me.\n\n> Spring sale!\n")
    reply.add_attachment(random.Random(7).randbytes(1_500_000), maintype="image", subtype="png", filename="hero.png")
    raw = reply.as_bytes(policy=SMTP_POLICY)
    assert len(raw) > 2_000_000
    return raw


def test_oversized_mail_to_a_tokenized_address_is_kept_truncated_and_honoured(
    start_smtp: Callable[..., SMTPComponent],
) -> None:
    limit = 1_048_576
    component = start_smtp({"max_message_bytes": limit})
    hub = component.hub
    with hub.sessions.begin() as session:
        (issued,) = issue_tokens(session, hub.signer, hub.config, [RecipientRequest("ann@example.com")], now=utcnow())
    mailto = re.search(r"mailto:([^>]+)", issued.list_unsubscribe).group(1)  # type: ignore[union-attr]
    raw = _image_heavy_reply(mailto, "ann@example.com")
    with client(component) as smtp:  # sendmail announces SIZE=, over the advertised limit
        smtp.ehlo("client.example.org")
        assert smtp.mail("ann@example.com", options=[f"SIZE={len(raw)}"])[0] == 250
        assert smtp.rcpt(mailto)[0] == 250
        code, reply = smtp.data(raw)
    assert code == 250, reply
    match = re.search(rb"stored as (\d+)", reply)
    assert match
    row = wait_classified(hub, int(match.group(1)))
    assert len(row.content) == limit and raw.startswith(row.content)
    assert row.meta["truncated"] is True
    assert (row.state, row.result["verification"]) == ("done", "token")
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"]
    for rcpt in (REPLIES, mailto[:-12] + "x" * 6 + mailto[-6:]):  # no token, a forged token: 552
        with client(component) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("bob@example.org", [rcpt], raw)
        with client(component) as smtp:
            smtp.ehlo("client.example.org")
            smtp.mail("bob@example.org")
            if smtp.rcpt(rcpt)[0] == 250:
                assert smtp.data(raw)[0] == 552
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 1


def _greeting(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def _connect(component: SMTPComponent, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection to the listener from ``source`` (any 127/8 address is loopback)."""
    return socket.create_connection(component.address, source_address=(source, 0))


def _ehlo(sock: socket.socket) -> None:
    """Say EHLO and read the answer: the connection is then talking, not idle."""
    sock.sendall(b"EHLO client.example.org\r\n")
    reply = b""
    while b"250 " not in reply:
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk


def _closed_by_server(sock: socket.socket, timeout: float = 5) -> bytes:
    """What the server sent before it closed ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_connection_limit_answers_421(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_connections": 3})
    talking = [_connect(component) for _ in range(3)]
    try:
        for sock in talking:
            assert _greeting(sock).startswith(b"220")
            _ehlo(sock)  # not idle: none of them can be evicted
        extra = _connect(component)
        assert _greeting(extra).startswith(b"421 4.3.2")
        extra.close()
        talking.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the close asynchronously
            with _connect(component) as again:
                if _greeting(again).startswith(b"220"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in talking:
            sock.close()


def test_one_peer_holding_200_idle_connections_does_not_lock_out_a_sender(
    start_smtp: Callable[..., SMTPComponent],
) -> None:
    component = start_smtp({"max_connections": 200, "max_connections_per_peer": 50})
    flood = [_connect(component, "127.0.0.1") for _ in range(200)]
    try:
        greetings = [_greeting(sock) for sock in flood]
        assert sum(g.startswith(b"220") for g in greetings) == 50
        assert sum(g.startswith(b"421 4.7.0") for g in greetings) == 150  # beyond the per-peer cap
        with smtplib.SMTP(*component.address, timeout=10, source_address=("127.0.0.2", 0)) as smtp:
            smtp.ehlo("client.example.org")
            assert smtp.mail("jane@example.org")[0] == 250
            assert smtp.rcpt(REPLIES)[0] == 250
            code, reply = smtp.data(message("STOP"))
            assert code == 250, reply
    finally:
        for sock in flood:
            sock.close()


def test_at_the_limit_the_oldest_idle_connection_is_evicted_for_a_new_peer(
    start_smtp: Callable[..., SMTPComponent],
) -> None:
    component = start_smtp({"max_connections": 10})
    held = [_connect(component, f"127.0.0.{10 + n}") for n in range(10)]
    try:
        for sock in held:
            assert _greeting(sock).startswith(b"220")
        _ehlo(held[0])  # the oldest talks: the oldest idle one is held[1]
        newcomer = _connect(component, "127.0.0.30")
        assert _greeting(newcomer).startswith(b"220")
        assert _closed_by_server(held[1]).startswith(b"421 4.3.2")
        _ehlo(held[0])  # the talking one is still served
        newcomer.close()
    finally:
        for sock in held:
            sock.close()


def test_under_stress_idle_connections_time_out_sooner(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp({"max_connections": 10, "timeout_seconds": 60, "stress_timeout_seconds": 1})
    held = [_connect(component, f"127.0.0.{10 + n}") for n in range(8)]  # 80 %: stress
    try:
        for sock in held:
            assert _greeting(sock).startswith(b"220")
            _ehlo(sock)  # each command re-arms its time-out, now the short one
        started = time.monotonic()
        for sock in held:
            assert _closed_by_server(sock, timeout=10) == b""
        assert time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()


def _start_data(component: SMTPComponent, source: str) -> socket.socket:
    """A raw connection from ``source`` that has sent DATA and got ``354``."""
    sock = _connect(component, source)
    assert _greeting(sock).startswith(b"220")
    _ehlo(sock)
    for line, code in ((b"MAIL FROM:<jane@example.org>\r\n", b"250"), (f"RCPT TO:<{REPLIES}>\r\n".encode(), b"250")):
        assert _reply(sock, line).startswith(code)
    assert _reply(sock, b"DATA\r\n").startswith(b"354")
    return sock


def _trickle_until_closed(sock: socket.socket, every: float, limit: float) -> float:
    """Send one byte of message every ``every`` seconds until the server closes ``sock``; the
    seconds that took (``limit`` at most)."""
    started = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        try:
            sock.sendall(b"x")
            if sock.recv(1024) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset: closed
            break
    return time.monotonic() - started


def test_under_stress_a_trickled_message_is_cut_off_by_its_deadline(
    start_smtp: Callable[..., SMTPComponent],
) -> None:
    """A byte every 0.5 s never re-arms the time-out: a message begun before the stress gets the
    stress time-out (1 s) from the moment stress begins, one begun under stress from its DATA."""
    component = start_smtp({"max_connections": 10, "timeout_seconds": 60, "stress_timeout_seconds": 1})
    held: list[socket.socket] = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            trickler = _start_data(component, source) if source == "127.0.0.2" else None
            held += [_connect(component, f"127.0.0.{10 + n}") for n in range(7)]  # 8 of 10 open: stress
            for sock in held[-7:]:
                assert _greeting(sock).startswith(b"220")
            if trickler is None:
                trickler = _start_data(component, source)
            with trickler:
                assert _trickle_until_closed(trickler, every=0.5, limit=20) < 4
        send(component, message("STOP"))  # a normal sender is still served
    finally:
        for sock in held:
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


def test_accepted_connections_have_nagle_off(start_smtp: Callable[..., SMTPComponent]) -> None:
    """Short SMTP sessions stall on Nagle + delayed ACK unless TCP_NODELAY is set (asyncio
    sets it only when the listening socket says IPPROTO_TCP)."""
    component = start_smtp()
    with client(component) as smtp:
        smtp.ehlo("client.example.org")
        session = component.controller.smtpd  # type: ignore[union-attr]  # the session just accepted
        accepted = session.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_malformed_message_is_stored_and_the_listener_keeps_working(start_smtp: Callable[..., SMTPComponent]) -> None:
    component = start_smtp()
    garbage = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\xff\xfe\x00 unsubscribe \x80\r\n" + bytes(range(32, 256))
    evidence_id = send(component, garbage)
    row = wait_classified(component.hub, evidence_id)
    assert row.result["classification"] in ("other", "review")
    assert send(component, message("hello")) == evidence_id + 1


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


INTERNATIONAL = "bücher.example"
A_LABEL = "xn--bcher-kva.example"


@pytest.mark.parametrize("rcpt_domain", [INTERNATIONAL, A_LABEL.upper()], ids=["unicode", "a-label"])
def test_tokenized_unsubscribe_to_an_international_domain_opts_out_the_tokens_recipient(
    start_smtp: Callable[..., SMTPComponent], rcpt_domain: str
) -> None:
    """``[smtp].domains`` names the domain in Unicode; a mail client writes to the token address
    with the domain in either form. The listener accepts it, and the classifier recognizes the
    token: the token's recipient is opted out (verification ``token``), never the sender."""
    component = start_smtp({"domains": [INTERNATIONAL]})
    hub = component.hub
    with hub.sessions.begin() as session:
        (issued,) = issue_tokens(session, hub.signer, hub.config, [RecipientRequest("ann@example.com")], now=utcnow())
    assert f"<mailto:unsub-{issued.token}@{A_LABEL}>" in issued.list_unsubscribe  # a valid ASCII address
    rcpt = f"unsub-{issued.token}@{rcpt_domain}"
    raw = message(
        "Unsubscribe", subject="Unsubscribe", sender="forwardee@example.net", to=f"unsub-{issued.token}@{A_LABEL}"
    )
    evidence_id = send(component, raw, rcpt=rcpt, mail_from="forwardee@example.net", mail_options=["SMTPUTF8"])
    row = wait_classified(hub, evidence_id)
    assert row.meta["rcpt_tos"] == [rcpt]
    assert (row.result["classification"], row.result["address"], row.result["verification"]) == (
        "unsubscribe",
        "ann@example.com",
        "token",
    )
    with hub.sessions() as session:
        assert address_state(session, "ann@example.com")["suppressed"]
        assert not address_state(session, "forwardee@example.net")["suppressed"]
        (event,) = session.scalars(select(Event)).all()
        assert (event.email, event.verification) == ("ann@example.com", "token")


def _reply(sock: socket.socket, line: bytes) -> bytes:
    """Send ``line`` and read one complete (last-line) answer."""
    sock.sendall(line)
    reply = b""
    while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", reply):
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    return reply


def test_over_long_lines_get_500_5_5_2_and_the_session_goes_on(
    start_smtp: Callable[..., SMTPComponent], caplog: pytest.LogCaptureFixture
) -> None:
    component = start_smtp()
    with _connect(component) as sock:
        sock.settimeout(10)
        assert _greeting(sock).startswith(b"220")
        _ehlo(sock)
        assert _reply(sock, b"NOOP " + b"a" * 1000 + b"\r\n").startswith(b"500 5.5.2")  # over 512
        assert _reply(sock, b"NOOP " + b"a" * 200_000 + b"\r\n").startswith(b"500 5.5.2")  # over the 64 KiB buffer
        assert _reply(sock, b"MAIL FROM:<jane@example.org>\r\n").startswith(b"250")
        assert _reply(sock, f"RCPT TO:<{REPLIES}>\r\n".encode()).startswith(b"250")
        assert _reply(sock, b"DATA\r\n").startswith(b"354")
        long_line = b"Subject: STOP\r\n\r\n" + b"b" * 100_000 + b"\r\n.\r\n"
        assert _reply(sock, long_line).startswith(b"500 5.5.2")
        assert _reply(sock, b"MAIL FROM:<jane@example.org>\r\n").startswith(b"250")  # the session goes on
        assert _reply(sock, f"RCPT TO:<{REPLIES}>\r\n".encode()).startswith(b"250")
        assert _reply(sock, b"DATA\r\n").startswith(b"354")
        assert _reply(sock, message("STOP") + b"\r\n.\r\n").startswith(b"250 2.0.0")
        assert _reply(sock, b"QUIT\r\n").startswith(b"221")
    with _connect(component) as sock:  # a line that never ends, then the client goes away
        assert _greeting(sock).startswith(b"220")
        sock.sendall(b"EHLO " + b"x" * 2_000_000)
    with client(component) as smtp:  # and the listener still serves
        assert smtp.noop()[0] == 250
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

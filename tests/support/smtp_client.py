"""A real SMTP client (smtplib) for the inbound tests, and a wait for a stored message's
classification."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Sequence

from adapters.hub import Hub
from adapters.store.models import Evidence
from inbound.listener import SMTPComponent
from tests.support.mail import REPLIES

STORED = re.compile(rb"stored as (\d+)")


def client(component: SMTPComponent) -> smtplib.SMTP:
    return smtplib.SMTP(*component.address, timeout=10)


def send(
    component: SMTPComponent,
    raw: bytes,
    rcpt: str = REPLIES,
    mail_from: str = "jane@example.org",
    mail_options: Sequence[str] = (),
) -> int:
    """Send one message; its evidence id, from the ``250`` answer to DATA. ``mail_options``:
    ``("SMTPUTF8",)`` for a recipient with a Unicode domain."""
    with client(component) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail(mail_from, options=list(mail_options))[0] == 250
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


def wait_counted(hub: Hub, *samples: str, timeout: float = 10.0) -> str:
    """The metrics once they show every sample line. The classifier counts a message once its
    commit has returned, which on SQLite is after the fsync that follows the commit's
    visibility (adapters.store.database), so a test that saw the row must wait for the count."""
    deadline = time.monotonic() + timeout
    while True:
        text = hub.metrics.render().decode()
        if all(sample in text for sample in samples):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"not counted: {[s for s in samples if s not in text]}\n{text}")
        time.sleep(0.02)

"""Real local servers for the tests: the app over HTTP, and an SMTP sink for the mail it sends."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from email.message import EmailMessage
from typing import Any

from webhooks.serving import BackgroundServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer(BackgroundServer):
    """A WSGI app served by waitress on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, host="127.0.0.1", port=0, threads=8, ident="test", name="test-http")
        self.start()


class Sink:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 2.0.0 OK"


def delivered(handler: Sink, count: int, *, settle: float = 0.3) -> list[EmailMessage]:
    """The sink's messages once ``count`` have arrived (sent after the HTTP answer), after
    ``settle`` more seconds in which no other may arrive."""
    deadline = time.monotonic() + 10
    while len(handler.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    assert len(handler.messages) == count, [m["Subject"] for m in handler.messages]
    return handler.messages

"""The durable evidence writer behind the listener: the row committed before ``250``, ``451``
when it cannot be, a fresh connection after a database error, group commit under
concurrency."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from adapters.errors import StoreError
from adapters.store.models import Evidence
from inbound.evidence import Received
from inbound.listener import SMTPComponent
from tests.support.mail import REPLIES, message
from tests.support.smtp_client import data_reply, send


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

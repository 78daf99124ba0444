"""The durable evidence writer behind the listener: the row committed before ``250``, ``451``
when it cannot be, a fresh connection after a database error, group commit under
concurrency, and on SQLite the WAL synced before ``250``."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.config import Config
from adapters.errors import StoreError
from adapters.hub import Hub
from adapters.store import database
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


def test_on_sqlite_the_message_is_synced_to_disk_before_250(
    start_smtp: Callable[..., SMTPComponent],
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer's own transaction ends through the connection's commit, which fsyncs the WAL
    (adapters.store.database), not with a bare ``COMMIT`` that would leave it to the next
    checkpoint."""
    config = make_config({"smtp": {"port": 0}})
    db = tmp_path / "smtp.db"
    hub = make_hub(dataclasses.replace(config, database=dataclasses.replace(config.database, url=f"sqlite:///{db}")))
    component = start_smtp(hub=hub)
    component.classifier.delay = 30  # no other transaction writes meanwhile
    real_fsync, synced = os.fsync, []

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(database.os, "fsync", fsync)
    send(component, message("STOP"))
    assert f"{db}-wal" in synced  # before the 250 came back

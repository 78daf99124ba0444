"""Retention of raw evidence (README "Erasure"): ``[retention] evidence_days`` purges settled
evidence past its age (by the worker and ``erase --expired-evidence``); events stay, and mail
still waiting for classification or for an admin is kept."""

from __future__ import annotations

from collections.abc import Callable

import requests
from sqlalchemy import func, select

from adapters.config import Config
from adapters.events import Source
from adapters.hub import Hub
from adapters.store.models import Event, Evidence
from adapters.store.retention import PURGED
from adapters.worker.outbox import Worker
from adapters.worker.retention import purge_expired_evidence
from tests.support.clock import Clock
from tests.support.store import ev

DAY = 86_400


def _store(hub: Hub, state: str, content: bytes) -> int:
    with hub.sessions.begin() as session:
        row = Evidence(
            channel="smtp",
            source="smtp",
            received_at=hub.clock(),
            content=content,
            content_type="message/rfc822",
            meta={"mail_from": "ann@example.com"},
            state=state,
            result={"category": "unsubscribe"} if state == "done" else None,
        )
        session.add(row)
        session.flush()
        row_id = row.id
    if state == "done":
        hub.record([ev("ann@example.com", source=Source.SMTP, provider_event_id=f"smtp:{row_id}", evidence_id=row_id)])
    return row_id


def test_settled_evidence_past_its_age_is_purged_and_events_stay(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    hub = make_hub(make_config({"retention": {"evidence_days": 30}}))
    old_done = _store(hub, "done", b"From: ann@example.com\r\n\r\nstop\r\n")
    old_review = _store(hub, "review", b"From: bo@example.com\r\n\r\nremove my colleague\r\n")
    old_pending = _store(hub, "pending", b"From: cy@example.com\r\n\r\nstop\r\n")
    clock.advance(30 * DAY - 1)
    young = _store(hub, "done", b"From: di@example.com\r\n\r\nstop\r\n")
    assert purge_expired_evidence(hub) == 0  # nothing is 30 days old yet
    clock.advance(2)
    assert purge_expired_evidence(hub) == 1
    assert purge_expired_evidence(hub) == 0  # a purged row is not purged again
    with hub.sessions() as session:
        rows = {r.id: r for r in session.scalars(select(Evidence))}
        assert (rows[old_done].state, rows[old_done].content, rows[old_done].meta, rows[old_done].result) == (
            PURGED,
            b"",
            None,
            None,
        )
        assert [rows[i].state for i in (old_review, old_pending, young)] == ["review", "pending", "done"]
        assert session.scalar(select(func.count()).select_from(Event).where(Event.evidence_id == old_done)) == 1


def test_the_worker_purges_about_hourly_and_never_when_kept_forever(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    forever = make_hub(make_config())
    _store(forever, "done", b"stop")
    clock.advance(3650 * DAY)
    assert purge_expired_evidence(forever) == 0
    hub = make_hub(make_config({"retention": {"evidence_days": 1}}))
    first = _store(hub, "done", b"stop")
    with requests.Session() as http:
        worker = Worker(hub, {}, http=http)
        clock.advance(DAY - 600)
        worker.upkeep()  # the first round purges: the 10-year-old row (``first`` is not a day old)
        clock.advance(1800)
        worker.upkeep()  # ``first`` has expired, but the last purge was half an hour ago
        with hub.sessions() as session:
            assert session.get_one(Evidence, first).state == "done"
        second = _store(hub, "done", b"stop")
        clock.advance(1800)
        worker.upkeep()
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Evidence).where(Evidence.state == PURGED)) == 2
        assert (session.get_one(Evidence, first).state, session.get_one(Evidence, second).state) == (PURGED, "done")

"""The inbound backlog (stored, answered 250, not yet classified) and its age gauge, on a real
database: only ``smtp`` rows still ``pending`` count, oldest first."""

from __future__ import annotations

import re
from datetime import timedelta

from adapters.hub import Hub
from adapters.store.inbound_backlog import oldest_pending_age, pending_evidence_ids
from adapters.store.models import Evidence
from tests.support.clock import Clock


def _gauge(hub: Hub) -> float:
    match = re.search(rb"^optout_inbound_oldest_pending_seconds (\S+)$", hub.metrics.render(), re.MULTILINE)
    assert match
    return float(match.group(1))


def test_only_pending_smtp_rows_count_and_the_oldest_sets_the_age(hub: Hub, clock: Clock) -> None:
    assert hub.inbound_oldest_pending_age() == 0 and _gauge(hub) == 0
    t0 = clock.now
    rows = [
        ("smtp", "done", t0 - timedelta(seconds=500)),  # classified
        ("webhook", "pending", t0 - timedelta(seconds=400)),  # another channel
        ("smtp", "pending", t0 + timedelta(seconds=30)),
        ("smtp", "pending", t0),
        ("smtp", "review", t0 - timedelta(seconds=300)),  # classified, waiting for an admin
    ]
    with hub.sessions.begin() as session:
        added = [
            Evidence(channel=channel, source="smtp", received_at=at, content=b"x", meta={}, state=state)
            for channel, state, at in rows
        ]
        session.add_all(added)
        session.flush()
        ids = [row.id for row in added]
    clock.advance(90)
    with hub.sessions() as session:
        assert pending_evidence_ids(session) == [ids[2], ids[3]]  # oldest first by id, as stored
        assert oldest_pending_age(session, clock.now) == 90
    assert hub.inbound_oldest_pending_age() == 90 and _gauge(hub) == 90

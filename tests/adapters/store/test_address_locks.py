from __future__ import annotations

import dataclasses
import multiprocessing
from datetime import timedelta

from sqlalchemy import select

from adapters.config import parse_config
from adapters.events import Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.store.address_locks import lock_id
from adapters.store.models import Suppression
from tests.support.writers import record_one_by_one


def test_lock_ids_are_stable_signed_64_bit() -> None:
    assert lock_id("ann@example.com") == lock_id("ann@example.com")
    assert lock_id("ann@example.com") != lock_id("bo@example.com")
    assert all(-(2**63) <= lock_id(f"a{i}@example.com") < 2**63 for i in range(100))


def test_two_processes_recording_opposite_events_end_in_the_newer_state(
    make_hub, postgresql_url, test_env, clock
) -> None:
    """A resubscribe and a newer opt-out of one address, committed at the same instant by two
    processes: the address ends suppressed (issue 14, case 3: without the lock some were lost)."""
    config = parse_config({"security": {"token_secret_env": "OPTOUT_HUB_SECRET"}}, test_env)
    hub: Hub = make_hub(dataclasses.replace(config, database=dataclasses.replace(config.database, url=postgresql_url)))
    t0 = clock()
    emails = [f"race{i}@example.com" for i in range(300)]
    hub.record([OptOutEvent(e, Kind.UNSUBSCRIBE, Source.API, occurred_at=t0) for e in emails])
    resubscribes = [
        OptOutEvent(
            e, Kind.RESUBSCRIBE, Source.PREFERENCES, verification=Verification.TOKEN, occurred_at=t0 + timedelta(1)
        )
        for e in emails
    ]
    opt_outs = [OptOutEvent(e, Kind.UNSUBSCRIBE, Source.API, occurred_at=t0 + timedelta(2)) for e in emails]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    writers = [
        ctx.Process(target=record_one_by_one, args=(postgresql_url, events, start))
        for events in (resubscribes, opt_outs)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    with hub.sessions() as session:
        lifted = session.scalars(select(Suppression.email_key).where(Suppression.suppressed.is_(False))).all()
    assert lifted == []

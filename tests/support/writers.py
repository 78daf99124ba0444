"""A writer process for concurrency tests: records its events one transaction each through
the real store, each one when every writer is ready with its own (so they commit together)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier

from adapters.config import parse_config
from adapters.events import OptOutEvent
from adapters.hub import Hub
from adapters.store.record import record_events
from tests.support.environment import TEST_SECRET


def record_one_by_one(url: str, events: Sequence[OptOutEvent], start: Barrier) -> None:
    config = parse_config({"security": {"token_secret_env": "SECRET"}}, {"SECRET": TEST_SECRET})
    hub = Hub.open(dataclasses.replace(config, database=dataclasses.replace(config.database, url=url)), upgrade=False)
    try:
        for event in events:
            start.wait(timeout=60)
            hub.record([event])
    finally:
        hub.close()


def record_holding(url: str, events: Sequence[OptOutEvent], hold_seconds: float) -> None:
    """Record each event in a transaction of its own that stays open ``hold_seconds`` after
    the event is written (a slow request), for concurrency tests."""
    config = parse_config({"security": {"token_secret_env": "SECRET"}}, {"SECRET": TEST_SECRET})
    hub = Hub.open(dataclasses.replace(config, database=dataclasses.replace(config.database, url=url)), upgrade=False)
    try:
        for event in events:
            with hub.sessions.begin() as session:
                record_events(session, [event], hub.policy, now=hub.clock())
                time.sleep(hold_seconds)
    finally:
        hub.close()

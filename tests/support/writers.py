"""A writer process for concurrency tests: records its events one transaction each through
the real store, each one when every writer is ready with its own (so they commit together)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier

from adapters.config import parse_config
from adapters.events import OptOutEvent
from adapters.hub import Hub
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

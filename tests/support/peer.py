"""A second process of the hub for tests of concurrent writers and workers: a long-lived child
(``multiprocessing``, spawned) with its own :class:`~adapters.hub.Hub` and push
:class:`~adapters.worker.outbox.Worker` on the same database, fed commands over a pipe.

Each command carries the parent's clock reading, so both processes agree on "now". Start it
once per test, not per example: a spawn costs about a second.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import requests

from adapters.config import Config
from adapters.events import OptOutEvent

TIMEOUT = 60.0


def _serve(config: Config, conn: Connection) -> None:
    from adapters.hub import Hub  # imported in the child only
    from adapters.providers import make_clients
    from adapters.worker.outbox import Worker

    now: list[datetime] = []
    hub = Hub.open(config, clock=lambda: now[-1], upgrade=False)
    http = requests.Session()
    worker = Worker(hub, make_clients(config, http, now=lambda: now[-1]), http=http, owner="peer", rng=lambda: 1.0)
    try:
        while True:
            command, at, payload = conn.recv()
            if command == "stop":
                break
            now.append(at)
            try:
                if command == "record":
                    conn.send(("ok", hub.record(payload).new))
                elif command == "push_due":
                    conn.send(("ok", {slug: tally.rows for slug, tally in worker.push_due().items()}))
                else:
                    conn.send(("error", f"unknown command {command!r}"))
            except Exception as exc:  # reported to the parent, which fails the test
                conn.send(("error", f"{exc.__class__.__name__}: {exc}"))
    finally:
        http.close()
        hub.close()


class PeerProcess:
    """The other process. :meth:`start_record` and :meth:`start_push` return at once (the child
    works while the caller does its own part); :meth:`result` waits for the child's answer."""

    def __init__(self, config: Config) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(config, child), name="optout-hub-peer", daemon=True)
        self.process.start()
        child.close()

    def start_record(self, events: Sequence[OptOutEvent], now: datetime) -> None:
        self._conn.send(("record", now, list(events)))

    def start_push(self, now: datetime) -> None:
        self._conn.send(("push_due", now, None))

    def result(self) -> Any:
        if not self._conn.poll(TIMEOUT):
            raise TimeoutError("the peer process did not answer")
        status, value = self._conn.recv()
        if status != "ok":
            raise AssertionError(f"peer process: {value}")
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self._conn.send(("stop", None, None))
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self._conn.close()

"""Constant Contact's state in the store: rotating refresh tokens refreshed by one process at
a time (threads on SQLite and PostgreSQL; two real worker processes on PostgreSQL), the
day's budget, the single-use authorization state."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from adapters.config import Config, load_config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import constant_contact
from tests.support import constant_contact as cc
from tests.support.clock import Clock


def test_threads_refreshing_at_once_make_one_token_call(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    with cc.started(clock, per_second=None) as fake:
        fake.token_delay = 0.3  # a slow token endpoint: every thread arrives while one refreshes
        hub = make_hub(make_config({"providers": {"constant_contact": cc.cc_table(fake)}}, env=cc.cc_env(fake)))
        errors: list[Exception] = []

        def call() -> None:
            with requests.Session() as http:
                client = constant_contact.make_client(hub.config, http, now=clock, state=cc.state(hub))
                try:
                    client.check()
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and fake.invalid_grants == 0
        assert fake.token_grants == ["refresh_token"]  # the others re-read the new token under the lock
        stored = cc.state(hub).load().tokens
        assert stored is not None and fake.refresh_tokens == {stored.refresh_token}


def test_the_authorization_state_is_good_once_and_for_ten_minutes(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    with cc.started(clock) as fake:
        hub = make_hub(make_config({"providers": {"constant_contact": cc.cc_table(fake)}}, env=cc.cc_env(fake)))
        state = cc.state(hub)
        issued = state.begin_authorization()
        assert not state.consume_authorization(issued + "x")  # a wrong state spends the issued one too
        issued = state.begin_authorization()
        assert state.consume_authorization(issued) and not state.consume_authorization(issued)
        issued = state.begin_authorization()
        clock.advance(601)
        assert not state.consume_authorization(issued)


def test_two_worker_processes_rotate_tokens_without_invalid_grant(tmp_path: Path, postgresql_url: str) -> None:
    """Access tokens that are due for a refresh about every second, a slow token endpoint,
    two real ``optout-hub worker`` processes pushing 60 opt-outs: every refresh is done by one
    process at a time, and the rotating refresh token is never reused."""
    with cc.started(lambda: datetime.now(UTC), per_second=None, access_lifetime=601) as fake:
        fake.token_delay = 0.2
        env = {"OPTOUT_HUB_SECRET": "s" * 32, **cc.cc_env(fake)}
        path = cc.write_config(tmp_path / "cc.toml", postgresql_url, fake, requests_per_second=20.0)
        hub = Hub.open(load_config(path, env), upgrade=True)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "adapters", "worker", "--config", str(path)],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for worker in workers:  # both running before the first opt-out arrives
            assert worker.stdout is not None and "push worker running" in worker.stdout.readline()
        try:  # opt-outs keep arriving: while one worker pushes a batch, the other takes the next
            for batch in range(6):
                hub.record([OptOutEvent(f"w{batch}-{i}@example.com", Kind.UNSUBSCRIBE, Source.API) for i in range(10)])
                time.sleep(0.7)
        finally:
            hub.close()
        try:
            deadline = time.monotonic() + 90
            while (
                time.monotonic() < deadline
                and sum(1 for c in fake.contacts.values() if c["email_address"]["permission_to_send"] == "unsubscribed")
                < 60
            ):
                time.sleep(0.2)
        finally:
            for worker in workers:
                worker.terminate()
            logs = [worker.communicate(timeout=30)[1] for worker in workers]
        unsubscribed = [c for c in fake.contacts.values() if c["email_address"]["permission_to_send"] == "unsubscribed"]
        assert len(unsubscribed) == 60, logs
        assert fake.invalid_grants == 0, logs
        assert len(fake.token_grants) >= 3  # the tokens did rotate while both pushed
        assert all("push constant_contact" in log for log in logs), logs  # both processes pushed
        hub = Hub.open(load_config(path, env))
        try:
            stored = cc.state(hub).load()
        finally:
            hub.close()
        assert stored.dead is None and stored.tokens is not None
        assert fake.refresh_tokens == {stored.tokens.refresh_token}
